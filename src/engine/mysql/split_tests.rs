use super::*;
use bytes::Bytes;

/// The pieces of `sql` fed in chunks of `size`, adjacent serial pieces joined.
fn split(sql: &str, batch: usize, size: usize) -> Vec<Piece> {
    let mut s = MysqlSplitter::with_batch_bytes(batch);
    let mut pieces = Vec::new();
    for chunk in sql.as_bytes().chunks(size.max(1)) {
        pieces.extend(s.push(chunk).unwrap());
    }
    pieces.extend(s.finish().unwrap());
    let mut joined: Vec<Piece> = Vec::new();
    for piece in pieces {
        match (joined.last_mut(), piece) {
            (Some(Piece::Serial(prev)), Piece::Serial(next)) => {
                let mut both = prev.to_vec();
                both.extend_from_slice(&next);
                *prev = Bytes::from(both);
            }
            (_, piece) => joined.push(piece),
        }
    }
    joined
}

/// Whole and in chunks of every size up to 13 bytes: all must agree, and nothing is lost.
fn pieces(sql: &str, batch: usize) -> Vec<Piece> {
    let whole = split(sql, batch, sql.len());
    for size in 1..14 {
        assert_eq!(split(sql, batch, size), whole, "chunks of {size} disagree");
    }
    let mut all = Vec::new();
    for piece in &whole {
        if let Piece::Serial(b) | Piece::Batch(b) = piece {
            all.extend_from_slice(b);
        }
    }
    assert_eq!(String::from_utf8(all).unwrap(), sql, "bytes lost or reordered");
    whole
}

fn serial(s: &str) -> Piece {
    Piece::Serial(Bytes::from(s.to_string()))
}

fn batch(s: &str) -> Piece {
    Piece::Batch(Bytes::from(s.to_string()))
}

/// What mariadb-dump 10.11 writes (rows one per line), with a trigger and a procedure whose
/// bodies hold INSERTs that must stay where they are.
const PREAMBLE: &str = "/*M!999999\\- enable the sandbox mode */ \n-- MariaDB dump 10.19\n\n\
/*!40101 SET @OLD_CHARACTER_SET_CLIENT=@@CHARACTER_SET_CLIENT */;\n/*!40101 SET NAMES utf8mb4 */;\n\
/*!40103 SET TIME_ZONE='+00:00' */;\n/*!40014 SET @OLD_FOREIGN_KEY_CHECKS=@@FOREIGN_KEY_CHECKS, FOREIGN_KEY_CHECKS=0 */;\n\
/*!40101 SET @OLD_SQL_MODE=@@SQL_MODE, SQL_MODE='NO_AUTO_VALUE_ON_ZERO' */;\n\n\
CREATE DATABASE /*!32312 IF NOT EXISTS*/ `shop`;\n\nUSE `shop`;\n\n\
DROP TABLE IF EXISTS `c`;\n/*!40101 SET character_set_client = utf8mb4 */;\nCREATE TABLE `c` (\n  `id` int(11) NOT NULL\n);\n\n\
LOCK TABLES `c` WRITE;\n/*!40000 ALTER TABLE `c` DISABLE KEYS */;\n";
const ROWS_1: &str = "INSERT INTO `c` VALUES\n(1,'a;b\\nc'),\n(2,'it\\'s; ');\n";
const ROWS_2: &str = "INSERT INTO `c` VALUES (3,'x'),(4,'-- no comment');\n";
const AFTER: &str = "/*!40000 ALTER TABLE `c` ENABLE KEYS */;\nUNLOCK TABLES;\n\
DELIMITER ;;\n/*!50003 CREATE*/ /*!50003 TRIGGER tr BEFORE INSERT ON c FOR EACH ROW\nINSERT INTO `c` VALUES (9,'x');\n*/;;\n\
CREATE PROCEDURE p()\nBEGIN\nINSERT INTO `c` VALUES (8,'y');\nEND ;;\nDELIMITER ;\n\
-- Dump completed on 2026-11-30\n";

fn dump() -> String {
    format!("{PREAMBLE}{ROWS_1}{ROWS_2}{AFTER}")
}

#[test]
fn large_runs_of_inserts_become_batches_between_serial_schema() {
    // Sessions replay the preamble's settings and the USE, not the per-table character set.
    let setup = Piece::Setup(Bytes::from_static(
        b"/*!40101 SET @OLD_CHARACTER_SET_CLIENT=@@CHARACTER_SET_CLIENT */;\n/*!40101 SET NAMES utf8mb4 */;\n\
          /*!40103 SET TIME_ZONE='+00:00' */;\n/*!40014 SET @OLD_FOREIGN_KEY_CHECKS=@@FOREIGN_KEY_CHECKS, FOREIGN_KEY_CHECKS=0 */;\n\
          /*!40101 SET @OLD_SQL_MODE=@@SQL_MODE, SQL_MODE='NO_AUTO_VALUE_ON_ZERO' */;\nUSE `shop`;\n",
    ));
    assert_eq!(
        pieces(&dump(), 10),
        vec![serial(PREAMBLE), setup.clone(), batch(ROWS_1), batch(ROWS_2), setup, serial(AFTER)]
    );
}

#[test]
fn a_run_of_rows_smaller_than_a_batch_stays_serial() {
    let sql = dump();
    assert_eq!(pieces(&sql, 1 << 20), vec![serial(&sql)]);
}

#[test]
fn inserts_that_are_not_one_whole_statement_ending_a_line_stay_serial() {
    for sql in [
        "INSERT INTO `c` VALUES (1); SELECT 1;\n",
        "INSERT INTO `c` VALUES (1,'\n');\nINSERT INTO `c` VALUES (2) /* tail */\n;\n",
        "SELECT 'x\nINSERT INTO `c` VALUES (1);\n';\n",
        "SELECT 1\nINSERT INTO `c` VALUES (1);\n",
        "/* c\nINSERT INTO `c` VALUES (1);\n*/\n",
        "DELIMITER //\nINSERT INTO `c` VALUES (1);\n//\nDELIMITER ;\n",
    ] {
        let got = pieces(sql, 1);
        assert!(
            got.iter().all(|p| !matches!(p, Piece::Batch(b) if b.starts_with(b"INSERT INTO `c` VALUES (1)"))),
            "{sql:?}: {got:?}"
        );
    }
    let sql = "INSERT INTO `c` VALUES (1,'\n');\n";
    assert_eq!(pieces(sql, 1), vec![Piece::Setup(Bytes::new()), batch(sql)]);
}

#[test]
fn autocommit_and_later_settings_are_not_part_of_a_session_setup() {
    let sql =
        "/*!40101 SET NAMES utf8mb4 */;\n/*!40101 SET autocommit=0 */;\nUSE `a`;\n/*!40101 SET x=1 */;\nUSE `b`;\n";
    let mut s = MysqlSplitter::with_batch_bytes(1);
    s.push(sql.as_bytes()).unwrap();
    assert_eq!(s.setup.concat(), b"/*!40101 SET NAMES utf8mb4 */;\nUSE `b`;\n");
}

#[test]
fn a_run_goes_to_data_sessions_only_once_it_reaches_the_route_size_then_in_small_batches() {
    let inserts: String = (0..200).map(|i| format!("INSERT INTO `c` VALUES ({i},'row number {i}');\n")).collect();
    let sql = format!("{PREAMBLE}{inserts}{AFTER}");
    let mut s = MysqlSplitter::with_sizes(inserts.len() + 1, 100);
    let mut got = s.push(sql.as_bytes()).unwrap();
    got.extend(s.finish().unwrap());
    assert!(got.iter().all(|p| !matches!(p, Piece::Batch(_))), "a run under the route size stays serial");

    let mut s = MysqlSplitter::with_sizes(2000, 100);
    let mut got = s.push(sql.as_bytes()).unwrap();
    got.extend(s.finish().unwrap());
    let batches: Vec<usize> =
        got.iter().filter_map(|p| if let Piece::Batch(b) = p { Some(b.len()) } else { None }).collect();
    assert!((2000..2100).contains(&batches[0]), "the first batch holds the route size: {batches:?}");
    assert!(batches[1..batches.len() - 1].iter().all(|&n| (100..200).contains(&n)), "then batch-sized: {batches:?}");
    assert_eq!(batches.iter().sum::<usize>(), inserts.len());
}
