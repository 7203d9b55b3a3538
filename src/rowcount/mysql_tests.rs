use super::*;
use crate::rowcount::testing::{count_every_way, counts};

fn count(dump: &str) -> Result<TableCounts, CountError> {
    count_every_way(|| Box::new(InsertCounter::new()), dump.as_bytes())
}

/// Shaped like `mariadb-dump 10.11 --single-transaction --routines --triggers --events --hex-blob
/// --databases shop`.
const DUMP: &str = r#"-- MariaDB dump 10.19  Distrib 10.11.6-MariaDB, for debian-linux-gnu (x86_64)
--
-- Host: localhost    Database: shop
-- ------------------------------------------------------
/*!40101 SET @OLD_CHARACTER_SET_CLIENT=@@CHARACTER_SET_CLIENT */;
/*!40103 SET TIME_ZONE='+00:00' */;
/*M!100616 SET @OLD_NOTE_VERBOSITY=@@NOTE_VERBOSITY, NOTE_VERBOSITY=0 */;

CREATE DATABASE /*!32312 IF NOT EXISTS*/ `shop` /*!40100 DEFAULT CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci */;

USE `shop`;

--
-- Table structure for table `items`
--

DROP TABLE IF EXISTS `items`;
/*!40101 SET @saved_cs_client     = @@character_set_client */;
/*!40101 SET character_set_client = utf8 */;
CREATE TABLE `items` (
  `id` int(11) NOT NULL AUTO_INCREMENT,
  `name` varchar(200) NOT NULL DEFAULT 'a(b),c;d',
  `data` blob DEFAULT NULL,
  PRIMARY KEY (`id`)
) ENGINE=InnoDB AUTO_INCREMENT=1000 DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
/*!40101 SET character_set_client = @saved_cs_client */;

--
-- Dumping data for table `items`
--

LOCK TABLES `items` WRITE;
/*!40000 ALTER TABLE `items` DISABLE KEYS */;
INSERT INTO `items` VALUES (1,'Crème brûlée ☕ (1),(2);',0x00FF00),(2,'it\'s a \\',NULL),(3,'\'),(\'',0x),
(4,'multi
line',0x28293B),(5,'a\"b',0xDEADBEEF);
INSERT INTO `items` VALUES (6,'x',NULL);
/*!40000 ALTER TABLE `items` ENABLE KEYS */;
UNLOCK TABLES;

CREATE TABLE `empty` (`id` int) ENGINE=InnoDB;

CREATE TABLE `we``ird (name` (
  `id` int
);
INSERT INTO `we``ird (name` (`id`) VALUES (1),(2);
INSERT IGNORE INTO `audit` VALUES (1, 'insert');
REPLACE INTO `audit` VALUES (2, 'x'), (3, 'y');

--
-- Temporary table structure for view `expensive`
--

SET @saved_cs_client     = @@character_set_client;
SET character_set_client = utf8;
/*!50001 CREATE VIEW `expensive` AS SELECT
 1 AS `id`,
  1 AS `name` */;
SET character_set_client = @saved_cs_client;

/*!50003 SET @saved_sql_mode       = @@sql_mode */ ;
DELIMITER ;;
/*!50003 CREATE*/ /*!50017 DEFINER=`root`@`localhost`*/ /*!50003 TRIGGER items_ai AFTER INSERT ON items FOR EACH ROW INSERT INTO audit (item_id, what) VALUES (NEW.id, 'insert') */;;
DELIMITER ;
DELIMITER ;;
CREATE DEFINER=`root`@`localhost` PROCEDURE `add_item`(IN n VARCHAR(200))
BEGIN
INSERT INTO items (name) VALUES (n);
INSERT INTO items (name) VALUES ('two'), ('three');
END ;;
DELIMITER ;
# a hash comment: INSERT INTO `items` VALUES (9);
-- Dump completed on 2026-11-25  3:00:00
"#;

#[test]
fn counts_the_tuples_of_every_insert_per_table() {
    assert_eq!(count(DUMP), Ok(counts(&[("items", 6), ("empty", 0), ("we`ird (name", 2), ("audit", 3)])));
}

#[test]
fn inserts_inside_triggers_and_routines_are_not_rows() {
    let dump = "DELIMITER ;;\nCREATE PROCEDURE p() BEGIN\nINSERT INTO t VALUES (1);\nINSERT INTO t VALUES (2);\nEND ;;\nDELIMITER ;\nINSERT INTO `t` VALUES (3);\n";
    assert_eq!(count(dump), Ok(counts(&[("t", 1)])));
}

#[test]
fn commented_out_inserts_are_not_rows() {
    let dump = "/* INSERT INTO `t` VALUES (1); */\n-- INSERT INTO `t` VALUES (2);\nINSERT INTO `t` VALUES (3),(4);\n";
    assert_eq!(count(dump), Ok(counts(&[("t", 2)])));
}

#[test]
fn strings_with_escaped_quotes_parentheses_and_commas_are_one_value() {
    let dump = r#"INSERT INTO `t` VALUES ('\'),(\'',1),('\\',2),('a''b),(c',3),("x",4),(_binary 'y',5),(X'28',6),('\\\\\'',7),('\\\\',8);"#;
    assert_eq!(count(dump), Ok(counts(&[("t", 8)])));
}

#[test]
fn a_dump_cut_inside_an_insert_is_not_counted() {
    let err = count("INSERT INTO `items` VALUES (1,'a'),(2,'").unwrap_err();
    assert_eq!(err.to_string(), "cannot count rows: the dump ends inside an INSERT into table items");
    assert!(count("INSERT INTO `items` VALUES (1,'a'),(2,'b')").is_err());
}

#[test]
fn a_trailing_clause_ends_the_rows() {
    let dump = "INSERT INTO `t` VALUES (1),(2) ON DUPLICATE KEY UPDATE a=VALUES(a);\nINSERT INTO `t` VALUES (3);\n";
    assert_eq!(count(dump), Ok(counts(&[("t", 3)])));
}

#[test]
fn statement_heads_name_their_table() {
    assert_eq!(values_table(b"INSERT INTO `a`.`b` (`x`) VALUES "), Some("b".into()));
    assert_eq!(values_table(b"INSERT LOW_PRIORITY IGNORE INTO `t` VALUES"), Some("t".into()));
    assert_eq!(values_table(b"INSERT INTO `t` (`a`"), None);
    assert_eq!(created_table(b"CREATE TABLE IF NOT EXISTS `x` "), Some("x".into()));
}

/// Random rows of every kind of value, escapes and parentheses in strings: the 64-byte path and
/// the byte-wise path (chunks shorter than a block) count the same, and count right.
#[test]
fn the_block_path_and_the_byte_path_agree_on_random_rows() {
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    const PIECES: [&str; 13] = ["a", "\\'", "\\\\", "(", ")", ",", ";", "\\\"", "''", " ", "\\n", "é", "\\\\\\'"];
    let mut dump = String::new();
    let mut expected = 0;
    for _ in 0..300 {
        dump.push_str("INSERT INTO `t` VALUES ");
        let rows = 1 + next() % 20;
        for r in 0..rows {
            if r > 0 {
                dump.push_str(if next() % 3 == 0 { ",\n" } else { "," });
            }
            dump.push('(');
            for f in 0..1 + next() % 5 {
                if f > 0 {
                    dump.push(',');
                }
                match next() % 4 {
                    0 => dump.push_str(&(next() % 1000).to_string()),
                    1 => dump.push_str("NULL"),
                    2 => dump.push_str("0x28293B5C27"),
                    _ => {
                        dump.push('\'');
                        for _ in 0..next() % 40 {
                            dump.push_str(PIECES[(next() % PIECES.len() as u64) as usize]);
                        }
                        dump.push('\'');
                    }
                }
            }
            dump.push(')');
        }
        dump.push_str(";\n");
        expected += rows;
    }
    let make = || Box::new(InsertCounter::new()) as Box<dyn RowCounter>;
    for size in [1, 7, 63, 64, 65, 100, 4096, dump.len()] {
        assert_eq!(
            crate::rowcount::testing::count_in_chunks(&make, dump.as_bytes(), size),
            Ok(counts(&[("t", expected)])),
            "chunks of {size}"
        );
    }
}
