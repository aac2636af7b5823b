//! The SQL objects the docs name exist: every backticked identifier in the
//! docs that the migrations once created as a table, view or function, or
//! that the schema had before the baseline migration ([`RETIRED`]), must
//! still exist after the last migration (a doc naming a dropped table or
//! function misleads an operator granting rights or reading a plan), and
//! every claim function the docs name (`prewarm_claim_*`) must exist.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Tables, views, functions and columns of the schema before the baseline
/// migration folded its history into today's schema.
const RETIRED: &[&str] = &[
    "pool_item_images",
    "design_objects",
    "prewarm_claim_pool_item",
    "prewarm_claim_warm",
    "image_positions",
    "image_keys",
];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Tables and functions after the migrations, and every one they ever made.
#[derive(Default)]
struct Schema {
    tables: BTreeSet<String>,
    functions: BTreeSet<String>,
    ever: BTreeSet<String>,
}

impl Schema {
    fn from_migrations() -> Schema {
        let dir = root().join("crates/store/migrations");
        let mut migrations: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path().join("up.sql"))
            .filter(|p| p.exists())
            .collect();
        migrations.sort();
        assert!(
            !migrations.is_empty(),
            "no migrations under {}",
            dir.display()
        );
        let mut schema = Schema::default();
        for m in migrations {
            schema.apply(&std::fs::read_to_string(m).unwrap());
        }
        schema
    }

    /// Applies one migration's CREATE and DROP of tables and functions, in
    /// the order they appear.
    fn apply(&mut self, sql: &str) {
        let text: String = sql
            .lines()
            .map(|l| l.split("--").next().unwrap_or(""))
            .collect::<Vec<_>>()
            .join("\n")
            .to_lowercase();
        let words: Vec<&str> = text
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|w| !w.is_empty())
            .collect();
        let mut i = 0;
        while i < words.len() {
            let (verb, rest) = (words[i], &words[i + 1..]);
            let rest = match rest {
                ["or", "replace", tail @ ..] => tail,
                tail => tail,
            };
            let (kind, rest) = match rest {
                ["table" | "view", tail @ ..] => ("table", tail),
                ["function", tail @ ..] => ("function", tail),
                _ => {
                    i += 1;
                    continue;
                }
            };
            let rest = match rest {
                ["if", "not", "exists", tail @ ..] | ["if", "exists", tail @ ..] => tail,
                tail => tail,
            };
            if let (Some(name), "create" | "drop") = (rest.first(), verb) {
                let set = if kind == "table" {
                    &mut self.tables
                } else {
                    &mut self.functions
                };
                if verb == "create" {
                    set.insert(name.to_string());
                    self.ever.insert(name.to_string());
                } else {
                    set.remove(*name);
                }
            }
            i += 1;
        }
    }

    fn exists(&self, name: &str) -> bool {
        self.tables.contains(name) || self.functions.contains(name)
    }
}

/// Backticked single identifiers of a markdown text.
fn backticked(text: &str) -> impl Iterator<Item = &str> {
    text.split('`').skip(1).step_by(2).filter(|s| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    })
}

fn docs() -> Vec<(PathBuf, String)> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(root().join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    paths.push(root().join("README.md"));
    paths.push(root().join("deploy/README.md"));
    paths
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            (p, text)
        })
        .collect()
}

#[test]
fn every_table_and_function_the_docs_name_exists() {
    let schema = Schema::from_migrations();
    assert!(schema.exists("pool_items") && schema.exists("prewarm_claim_item"));
    let mut stale = Vec::new();
    for (path, text) in docs() {
        for name in backticked(&text) {
            let once = schema.ever.contains(name)
                || RETIRED.contains(&name)
                || name.starts_with("prewarm_claim");
            if once && !schema.exists(name) {
                stale.push(format!("{}: `{name}`", path.display()));
            }
        }
    }
    assert!(
        stale.is_empty(),
        "the docs name SQL objects that no longer exist: {stale:?}"
    );
}

/// The tables `schema.rs` declares (`diesel::table! { name (key) { ... } }`).
fn declared_tables(schema_rs: &str) -> BTreeSet<String> {
    schema_rs
        .split("diesel::table! {")
        .skip(1)
        .filter_map(|block| {
            let line = block
                .lines()
                .map(str::trim)
                .find(|l| !l.is_empty() && !l.starts_with('#'))?;
            let name = line.split([' ', '(']).next()?;
            Some(name.rsplit('.').next().unwrap_or(name).to_string())
        })
        .collect()
}

#[test]
fn schema_rs_declares_every_table_the_migrations_create() {
    let schema = Schema::from_migrations();
    let text = std::fs::read_to_string(root().join("crates/store/src/db/schema.rs")).unwrap();
    let declared = declared_tables(&text);
    let missing: Vec<&String> = schema.tables.difference(&declared).collect();
    let unknown: Vec<&String> = declared.difference(&schema.tables).collect();
    assert!(
        missing.is_empty() && unknown.is_empty(),
        "crates/store/src/db/schema.rs is out of step with the migrations (run `make schema`): \
         missing {missing:?}, not in the migrations {unknown:?}"
    );
}

#[test]
fn the_schema_reader_finds_each_table_once() {
    let text = "diesel::table! {\n    a (id) {\n        id -> Uuid,\n    }\n}\n\
                diesel::table! {\n    #[sql_name = \"b\"]\n    b (x, y) {\n    }\n}\n";
    let names: Vec<String> = declared_tables(text).into_iter().collect();
    assert_eq!(names, ["a", "b"]);
}

#[test]
fn the_migration_reader_follows_creates_and_drops_in_order() {
    let mut s = Schema::default();
    s.apply(
        "CREATE TABLE IF NOT EXISTS a (x int); -- DROP TABLE a\n\
         CREATE OR REPLACE FUNCTION f() RETURNS int AS $$ SELECT 1 $$ LANGUAGE sql;\n\
         DROP FUNCTION IF EXISTS f(); CREATE FUNCTION g() RETURNS int AS $$ SELECT 1 $$ LANGUAGE sql;\n\
         CREATE VIEW v AS SELECT 1;",
    );
    assert!(s.exists("a") && s.exists("g") && s.exists("v") && !s.exists("f"));
    assert!(s.ever.contains("f"));
}
