//! Similarity: `0.5` for the same category, plus `0.5 x` the Jaccard index of
//! the two templates' words (the name's words and the layout's `tags` array).
//! Ranked by score, then id; the source itself is part of the ranking (as
//! real recommenders often return it), so clients must filter it out.

use std::collections::HashSet;

use uuid::Uuid;

/// What the ranking needs of a template.
#[derive(Debug, Clone)]
pub struct Item {
    pub id: Uuid,
    pub category: String,
    pub words: HashSet<String>,
}

impl Item {
    pub fn new(id: Uuid, category: &str, name: &str, layout: &serde_json::Value) -> Self {
        let mut words: HashSet<String> = name
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
            .map(str::to_lowercase)
            .collect();
        if let Some(tags) = layout.get("tags").and_then(|t| t.as_array()) {
            words.extend(
                tags.iter()
                    .filter_map(|t| t.as_str())
                    .map(str::to_lowercase),
            );
        }
        Self {
            id,
            category: category.to_string(),
            words,
        }
    }
}

pub fn score(a: &Item, b: &Item) -> f64 {
    let category = if a.category == b.category { 0.5 } else { 0.0 };
    let union = a.words.union(&b.words).count();
    let jaccard = if union == 0 {
        0.0
    } else {
        a.words.intersection(&b.words).count() as f64 / union as f64
    };
    category + 0.5 * jaccard
}

/// Every item ranked by similarity to `source`, best first.
pub fn rank(source: &Item, items: &[Item]) -> Vec<(Uuid, f64)> {
    let mut ranked: Vec<(Uuid, f64)> = items.iter().map(|i| (i.id, score(source, i))).collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    ranked
}

/// One 1-based page of `ranked`, and the next page's number if any.
pub fn page<T: Clone>(ranked: &[T], page: usize, per_page: usize) -> (Vec<T>, Option<usize>) {
    let start = (page - 1).saturating_mul(per_page).min(ranked.len());
    let end = start.saturating_add(per_page).min(ranked.len());
    let next = (end < ranked.len()).then_some(page + 1);
    (ranked[start..end].to_vec(), next)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(n: u128, category: &str, name: &str) -> Item {
        Item::new(Uuid::from_u128(n), category, name, &serde_json::json!({}))
    }

    #[test]
    fn same_category_and_shared_words_rank_first() {
        let source = item(1, "cards", "blue birthday card");
        let items = vec![
            source.clone(),
            item(2, "flyers", "blue birthday flyer"),
            item(3, "cards", "wedding card"),
            item(4, "cards", "blue birthday card"),
            item(5, "posters", "concert"),
        ];
        let ids: Vec<u128> = rank(&source, &items)
            .iter()
            .map(|(id, _)| id.as_u128())
            .collect();
        assert_eq!(ids, vec![1, 4, 3, 2, 5]);
    }

    #[test]
    fn tags_in_the_layout_count_as_words() {
        let a = Item::new(
            Uuid::nil(),
            "c",
            "x",
            &serde_json::json!({"tags": ["Summer"]}),
        );
        assert!(a.words.contains("summer"));
    }

    #[test]
    fn pages_cover_the_ranking_once_and_end() {
        let ranked: Vec<u32> = (0..7).collect();
        assert_eq!(page(&ranked, 1, 3), (vec![0, 1, 2], Some(2)));
        assert_eq!(page(&ranked, 3, 3), (vec![6], None));
        assert_eq!(page(&ranked, 9, 3), (vec![], None));
    }
}
