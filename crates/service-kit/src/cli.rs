//! What every binary answers before it reads a setting: `--help` (what it
//! is, its subcommands, the settings it needs and where they are
//! documented) and `--version` (with the commit it was built from). A
//! first argument starting with `-` that is neither is refused with exit
//! code 2, the usage on stderr. Hand-written: four flags do not pay for a
//! command-line parser's build time.

/// The version line's commit: `git rev-parse --short HEAD` at build time.
pub const COMMIT: &str = env!("PREWARM_COMMIT");

/// One binary's introduction.
#[derive(Debug, Clone, Copy)]
pub struct About {
    pub name: &'static str,
    /// One line: what it is.
    pub what: &'static str,
    /// `(subcommand, what it does)`; none for a binary without any.
    pub subcommands: &'static [(&'static str, &'static str)],
    /// Flags the binary reads itself, `(flag, what it does)`.
    pub flags: &'static [(&'static str, &'static str)],
    /// The settings it reads and where they are documented.
    pub settings: &'static str,
}

/// What the first argument asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Asked {
    /// Printed the help or the version: exit 0.
    Done,
    /// An option the binary does not know: exit 2.
    Unknown(String),
    /// Nothing for this module: the binary goes on.
    Run,
}

impl About {
    /// The help text.
    pub fn help(&self) -> String {
        let mut out = format!(
            "{} {}: {}\n\nUsage: {}",
            self.name,
            self.version(),
            self.what,
            self.name
        );
        if !self.subcommands.is_empty() {
            out.push_str(" [SUBCOMMAND]");
        }
        if !self.flags.is_empty() {
            out.push_str(" [OPTIONS]");
        }
        out.push('\n');
        if !self.subcommands.is_empty() {
            out.push_str("\nSubcommands:\n");
            for (name, what) in self.subcommands {
                out.push_str(&format!("  {name:<12} {what}\n"));
            }
        }
        out.push_str("\nOptions:\n");
        for (flag, what) in self.flags {
            out.push_str(&format!("  {flag:<18} {what}\n"));
        }
        out.push_str("  -h, --help         this text\n  -V, --version      the version and the commit it was built from\n");
        out.push_str(&format!("\nSettings: {}\n", self.settings));
        out
    }

    /// `0.1.0 (commit abc1234)`.
    pub fn version(&self) -> String {
        format!("{} (commit {COMMIT})", env!("CARGO_PKG_VERSION"))
    }

    /// Answers `args[1]` (the arguments after the program name) if it is
    /// `--help`/`-h`/`help`, `--version`/`-V`, or an unknown option when
    /// the binary takes no flags of its own.
    pub fn answer(&self, first: Option<&str>) -> Asked {
        match first {
            Some("--help" | "-h" | "help") => {
                print!("{}", self.help());
                Asked::Done
            }
            Some("--version" | "-V") => {
                println!("{} {}", self.name, self.version());
                Asked::Done
            }
            Some(flag) if flag.starts_with('-') && self.flags.is_empty() => {
                Asked::Unknown(flag.to_string())
            }
            _ => Asked::Run,
        }
    }

    /// [`Self::answer`] on the process's arguments; exits when answered.
    pub fn intercept(&self) {
        match self.answer(std::env::args().nth(1).as_deref()) {
            Asked::Done => std::process::exit(0),
            Asked::Unknown(flag) => {
                eprintln!("{}: unknown option {flag}\n\n{}", self.name, self.help());
                std::process::exit(2)
            }
            Asked::Run => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ABOUT: About = About {
        name: "demo",
        what: "a demo",
        subcommands: &[("migrate", "apply the migrations and exit")],
        flags: &[],
        settings: "PREWARM_* variables; docs/configuration.md",
    };

    #[test]
    fn help_names_the_subcommands_the_settings_and_the_version() {
        let help = ABOUT.help();
        for part in [
            "demo",
            "a demo",
            "migrate",
            "docs/configuration.md",
            "--version",
            COMMIT,
        ] {
            assert!(help.contains(part), "{part} missing from {help}");
        }
        assert_eq!(ABOUT.answer(Some("--help")), Asked::Done);
        assert_eq!(ABOUT.answer(Some("-V")), Asked::Done);
        assert_eq!(
            ABOUT.answer(Some("--nope")),
            Asked::Unknown("--nope".into())
        );
        assert_eq!(ABOUT.answer(Some("migrate")), Asked::Run);
        assert_eq!(ABOUT.answer(None), Asked::Run);
        let with_flags = About {
            flags: &[("--quick", "short")],
            ..ABOUT
        };
        assert_eq!(
            with_flags.answer(Some("--quick")),
            Asked::Run,
            "its own flags are its own"
        );
    }
}
