//! Size bounds for expansion: how large one expanded word may grow, and how many expanded bytes
//! one build (or one `rbuild check`) may produce in total. Without them `ARG a1=${a0}${a0}`
//! repeated forty times asks for terabytes.
//!
//! The per-word bound always applies. The total applies inside a [`budget`] scope, which the
//! caller opens around everything that belongs to one build (planning, the size check of
//! `rbuild check`); expansion runs on the caller's thread, so the scope is thread-local.

use std::cell::RefCell;

/// Default bound on one expanded word: the Dockerfile size cap, so every word written out
/// literally fits.
pub const DEFAULT_PER_WORD: usize = 4 << 20;
/// Default bound on the bytes all expansions of one build produce together.
pub const DEFAULT_PER_BUILD: usize = 64 << 20;
/// Environment variable overriding [`DEFAULT_PER_WORD`], named in the error that the bound
/// stops (the caller reads it: the cli with `rbuild_store::size`, as every size rbuild reads).
pub const ENV_PER_WORD: &str = "RBUILD_EXPANSION_LIMIT";
/// Environment variable overriding [`DEFAULT_PER_BUILD`].
pub const ENV_PER_BUILD: &str = "RBUILD_EXPANSION_TOTAL";

/// The two bounds, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub per_word: usize,
    pub per_build: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            per_word: DEFAULT_PER_WORD,
            per_build: DEFAULT_PER_BUILD,
        }
    }
}

/// `4 MiB`, `512 KiB`, `100 bytes`: a bound for a message.
pub fn human(bytes: usize) -> String {
    for (shift, unit) in [(30, "GiB"), (20, "MiB"), (10, "KiB")] {
        if bytes >= 1 << shift && bytes.is_multiple_of(1 << shift) {
            return format!("{} {unit}", bytes >> shift);
        }
    }
    format!("{bytes} bytes")
}

struct Budget {
    limits: Limits,
    spent: usize,
}

thread_local! {
    static BUDGET: RefCell<Option<Budget>> = const { RefCell::new(None) };
}

/// Open a budget scope on this thread: until the guard drops, expansions count against
/// `limits.per_build` and each is bounded by `limits.per_word`. Scopes nest (the inner one
/// replaces the outer until it ends).
#[must_use = "the budget ends when the guard drops"]
pub fn budget(limits: Limits) -> BudgetGuard {
    let prev = BUDGET.with(|b| b.borrow_mut().replace(Budget { limits, spent: 0 }));
    BudgetGuard { prev }
}

/// Ends a [`budget`] scope when dropped.
pub struct BudgetGuard {
    prev: Option<Budget>,
}

impl Drop for BudgetGuard {
    fn drop(&mut self) {
        let prev = self.prev.take();
        BUDGET.with(|b| *b.borrow_mut() = prev);
    }
}

/// The per-word bound in force on this thread.
pub(super) fn per_word() -> usize {
    BUDGET.with(|b| {
        b.borrow()
            .as_ref()
            .map_or(DEFAULT_PER_WORD, |b| b.limits.per_word)
    })
}

/// Charge `bytes` of expansion output to the scope's budget; the message when it runs out.
pub(super) fn charge(bytes: usize) -> Result<(), String> {
    BUDGET.with(|b| {
        let mut b = b.borrow_mut();
        let Some(b) = b.as_mut() else {
            return Ok(());
        };
        b.spent = b.spent.saturating_add(bytes);
        if b.spent > b.limits.per_build {
            return Err(format!(
                "variable expansions produce more than {} in total, the limit for one build \
                 (set {ENV_PER_BUILD} to raise it)",
                human(b.limits.per_build)
            ));
        }
        Ok(())
    })
}

/// The message for a word that grew past the per-word bound.
pub(super) fn too_large(limit: usize) -> String {
    format!(
        "the expanded value is larger than {}, the limit for one word (set {ENV_PER_WORD} to \
         raise it)",
        human(limit)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_print_exactly() {
        assert_eq!(human(4 << 20), "4 MiB");
        assert_eq!(human(1000), "1000 bytes");
    }

    #[test]
    fn scopes_nest_and_restore() {
        assert_eq!(per_word(), DEFAULT_PER_WORD);
        {
            let _outer = budget(Limits {
                per_word: 10,
                per_build: 100,
            });
            assert_eq!(per_word(), 10);
            {
                let _inner = budget(Limits {
                    per_word: 20,
                    per_build: 5,
                });
                assert!(charge(6).is_err());
            }
            assert_eq!(per_word(), 10);
            assert!(charge(100).is_ok());
            assert!(charge(1).is_err());
        }
        assert_eq!(per_word(), DEFAULT_PER_WORD);
        assert!(charge(usize::MAX).is_ok());
    }
}
