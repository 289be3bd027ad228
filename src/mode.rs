//! `chmod` modes as chmod(1) reads them: octal (`755`, `1777`) or symbolic clauses
//! (`u+x`, `go-w`, `a=rX`, `u=rwx,g=rx,o=`, `g=u`), applied to a node's current mode.

use anyhow::bail;

/// A parsed `chmod` mode, applied per node by [`ModeChange::apply`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModeChange {
    /// An octal mode. Under five digits it keeps a directory's set-user-ID and set-group-ID bits,
    /// as GNU chmod does (`00755` clears them).
    Absolute {
        mode: u32,
        keep_dir_setid: bool,
    },
    Symbolic(Vec<Clause>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clause {
    /// The bits of u, g, o this clause touches (07777-style mask of who); `None`: `a` less the umask.
    who: Option<u32>,
    actions: Vec<(char, Perm)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Perm {
    /// Some of r, w, x, X, s, t.
    Letters(String),
    /// Copy of another class's current bits (`g=u`).
    Copy(char),
}

const WHO_U: u32 = 0o4700;
const WHO_G: u32 = 0o2070;
const WHO_O: u32 = 0o1007;

impl ModeChange {
    pub fn parse(s: &str) -> anyhow::Result<ModeChange> {
        if !s.is_empty() && s.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
            return match u32::from_str_radix(s, 8) {
                Ok(m) if m <= 0o7777 => Ok(ModeChange::Absolute {
                    mode: m,
                    keep_dir_setid: s.len() < 5,
                }),
                _ => bail!("invalid mode {s:?}: an octal mode is at most 7777"),
            };
        }
        let mut clauses = Vec::new();
        for part in s.split(',') {
            clauses.push(parse_clause(part).map_err(|why| {
                anyhow::anyhow!("invalid mode {s:?}: {why} (e.g. 755, u+x, go-w, a=rX)")
            })?);
        }
        Ok(ModeChange::Symbolic(clauses))
    }

    /// The new permission bits (07777) of a node whose mode is `mode`; `is_dir` for `X`, `umask`
    /// for clauses without a who (`+x` means `a+x` less the umask, as in chmod(1)).
    pub fn apply(&self, mode: u32, is_dir: bool, umask: u32) -> u32 {
        let clauses = match self {
            ModeChange::Absolute {
                mode: m,
                keep_dir_setid,
            } => {
                let kept = if is_dir && *keep_dir_setid {
                    mode & 0o6000
                } else {
                    0
                };
                return m | kept;
            }
            ModeChange::Symbolic(c) => c,
        };
        let mut mode = mode & 0o7777;
        for c in clauses {
            let (who, mask) = match c.who {
                Some(w) => (w, 0o7777),
                None => (WHO_U | WHO_G | WHO_O, !umask & 0o7777),
            };
            for (op, perm) in &c.actions {
                let bits = match perm {
                    Perm::Letters(l) => letters_bits(l, mode, is_dir),
                    Perm::Copy(from) => copy_bits(*from, mode),
                } & who
                    & mask;
                mode = match op {
                    '+' => mode | bits,
                    '-' => mode & !bits,
                    // `=` clears what `who` covers (not the special bits of a directory, like
                    // GNU chmod), then sets.
                    _ => {
                        let clear = if is_dir { who & 0o777 } else { who };
                        (mode & !clear) | bits
                    }
                };
            }
        }
        mode
    }
}

fn parse_clause(part: &str) -> Result<Clause, String> {
    let split = part
        .find(['+', '-', '='])
        .ok_or("no operator (+, - or =)")?;
    let (who_s, mut rest) = part.split_at(split);
    let mut who = 0;
    for ch in who_s.chars() {
        who |= match ch {
            'u' => WHO_U,
            'g' => WHO_G,
            'o' => WHO_O,
            'a' => WHO_U | WHO_G | WHO_O,
            _ => return Err(format!("unknown class {ch:?}")),
        };
    }
    let mut actions = Vec::new();
    while let Some(op) = rest.chars().next() {
        if !matches!(op, '+' | '-' | '=') {
            return Err(format!("unexpected {op:?}"));
        }
        rest = &rest[1..];
        let end = rest.find(['+', '-', '=']).unwrap_or(rest.len());
        let (perm_s, tail) = rest.split_at(end);
        rest = tail;
        let perm = match perm_s {
            "u" | "g" | "o" => Perm::Copy(perm_s.chars().next().unwrap_or('u')),
            p if p.chars().all(|c| "rwxXst".contains(c)) => Perm::Letters(p.to_string()),
            p => return Err(format!("unknown permission {p:?}")),
        };
        actions.push((op, perm));
    }
    Ok(Clause {
        who: (who != 0).then_some(who),
        actions,
    })
}

fn letters_bits(letters: &str, mode: u32, is_dir: bool) -> u32 {
    let mut bits = 0;
    for c in letters.chars() {
        bits |= match c {
            'r' => 0o444,
            'w' => 0o222,
            'x' => 0o111,
            // Execute only where it makes sense: directories, or a file executable by someone.
            'X' if is_dir || mode & 0o111 != 0 => 0o111,
            's' => 0o6000,
            't' => 0o1000,
            _ => 0,
        };
    }
    bits
}

/// The bits of class `from` (u, g or o) in `mode`, repeated for all three classes.
fn copy_bits(from: char, mode: u32) -> u32 {
    let three = match from {
        'u' => (mode >> 6) & 7,
        'g' => (mode >> 3) & 7,
        _ => mode & 7,
    };
    three * 0o111
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sym(s: &str, mode: u32, is_dir: bool) -> u32 {
        ModeChange::parse(s).unwrap().apply(mode, is_dir, 0o022)
    }

    #[test]
    fn octal_modes_replace_the_bits() {
        assert_eq!(sym("755", 0o600, false), 0o755);
        assert_eq!(sym("1777", 0o755, true), 0o1777);
        assert_eq!(sym("0", 0o755, false), 0);
        assert!(ModeChange::parse("17777").is_err());
        // A directory keeps its set-id bits unless five digits say otherwise (GNU chmod).
        assert_eq!(sym("755", 0o2775, true), 0o2755);
        assert_eq!(sym("00755", 0o2775, true), 0o755);
        assert_eq!(sym("755", 0o2775, false), 0o755);
        assert_eq!(sym("4755", 0o2700, true), 0o6755);
    }

    #[test]
    fn symbolic_clauses_change_what_they_name() {
        assert_eq!(sym("u+x", 0o644, false), 0o744);
        assert_eq!(sym("go-w", 0o666, false), 0o644);
        assert_eq!(sym("a=r", 0o777, false), 0o444);
        assert_eq!(sym("u=rwx,g=rx,o=", 0o000, false), 0o750);
        assert_eq!(sym("g=u", 0o640, false), 0o660);
        assert_eq!(sym("u+s,+t", 0o755, false), 0o5755);
        assert_eq!(sym("u-x+s", 0o755, false), 0o4655);
    }

    #[test]
    fn capital_x_and_no_class_follow_chmod() {
        // X: execute for directories and for files someone may already execute.
        assert_eq!(sym("a+X", 0o644, false), 0o644);
        assert_eq!(sym("a+X", 0o744, false), 0o755);
        assert_eq!(sym("a+X", 0o644, true), 0o755);
        // No class: all, less the umask (022 here: +w gives only u+w).
        assert_eq!(sym("+w", 0o444, false), 0o644);
        assert_eq!(sym("+x", 0o644, false), 0o755);
    }

    #[test]
    fn nonsense_is_refused_with_the_mode_named() {
        for bad in ["", "u", "z+x", "u+q", "8", "u+x,"] {
            let e = ModeChange::parse(bad).unwrap_err().to_string();
            assert!(e.contains("invalid mode"), "{bad:?}: {e}");
        }
    }
}
