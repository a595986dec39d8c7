//! The one CPU feature check: which instruction set the kernels run on, chosen once per
//! process from what the CPU has, or forced with `QUILL_CPU=portable|avx2|avx512|neon` (tests,
//! benchmarks, a CPU or VM that reports features wrongly).
//!
//! Every kernel dispatches on [`isa()`] (or on an [`Isa`] handed down from it), so that a
//! function compiled with `#[target_feature]` runs only where this check found its features:
//! an `unsafe` call into one names the [`Isa`] variant that guarantees them.

use std::sync::OnceLock;

/// The environment variable that forces a path.
pub const ENV: &str = "QUILL_CPU";

/// An instruction set the kernels have a path for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Isa {
    /// Plain Rust loops: any CPU (what the compiler makes of them for the target's baseline).
    Portable,
    /// x86-64 with AVX2, FMA and F16C (Haswell, Zen and later): chosen only where all three
    /// are present, so a kernel may enable any of them. `avx512`: the CPU also has AVX-512 F,
    /// BW, VL and VNNI (Ice Lake, Sapphire Rapids, Zen 4 and later), and the kernels that have
    /// a 512-bit version use it (prompt products); a kernel may then enable those four too.
    Avx2 { avx512: bool },
    /// aarch64 Advanced SIMD; `dotprod`: the CPU has `SDOT`/`UDOT` (ARMv8.2's dotprod, Apple
    /// M1 and later, Neoverse, Cortex-A76 and later), checked at run time.
    Neon { dotprod: bool },
}

impl Isa {
    /// The name `QUILL_CPU` takes for this path.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Portable => "portable",
            Isa::Avx2 { avx512: false } => "avx2",
            Isa::Avx2 { avx512: true } => "avx512",
            Isa::Neon { .. } => "neon",
        }
    }
}

impl std::fmt::Display for Isa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Isa::Neon { dotprod: true } => f.write_str("neon (dotprod)"),
            other => f.write_str(other.name()),
        }
    }
}

/// The CPU features the kernels care about, as detected (or, in tests, as made up).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Features {
    pub avx2: bool,
    pub fma: bool,
    pub f16c: bool,
    pub neon: bool,
    pub dotprod: bool,
    /// AVX-512 F, BW, VL and VNNI, all four.
    pub avx512: bool,
}

impl Features {
    /// This CPU's features (the standard library's run-time detection).
    pub fn detect() -> Self {
        #[allow(unused_mut)]
        let mut f = Features::default();
        #[cfg(target_arch = "x86_64")]
        {
            f.avx2 = std::is_x86_feature_detected!("avx2");
            f.fma = std::is_x86_feature_detected!("fma");
            f.f16c = std::is_x86_feature_detected!("f16c");
            f.avx512 = std::is_x86_feature_detected!("avx512f")
                && std::is_x86_feature_detected!("avx512bw")
                && std::is_x86_feature_detected!("avx512vl")
                && std::is_x86_feature_detected!("avx512vnni");
        }
        #[cfg(target_arch = "aarch64")]
        {
            f.neon = std::arch::is_aarch64_feature_detected!("neon");
            f.dotprod = std::arch::is_aarch64_feature_detected!("dotprod");
        }
        f
    }

    /// Whether this CPU can run `isa`'s kernels. NEON counts only where this build has NEON
    /// kernels (aarch64).
    pub fn supports(self, isa: Isa) -> bool {
        match isa {
            Isa::Portable => true,
            Isa::Avx2 { avx512 } => {
                cfg!(target_arch = "x86_64")
                    && self.avx2
                    && self.fma
                    && self.f16c
                    && (!avx512 || self.avx512)
            }
            Isa::Neon { dotprod } => {
                cfg!(target_arch = "aarch64") && self.neon && (!dotprod || self.dotprod)
            }
        }
    }

    /// The fastest path this CPU runs.
    pub fn best(self) -> Isa {
        let neon = Isa::Neon {
            dotprod: self.dotprod,
        };
        let avx2 = Isa::Avx2 {
            avx512: self.avx512,
        };
        [avx2, neon]
            .into_iter()
            .find(|&isa| self.supports(isa))
            .unwrap_or(Isa::Portable)
    }

    /// The paths this CPU runs, portable first: what the kernel tests compare. A CPU with
    /// NEON's dot-product extension runs the NEON kernels without it too (`sdot` replaced by
    /// widening multiplies), and one with AVX-512 the AVX2 kernels, so both are listed.
    pub fn paths(self) -> Vec<Isa> {
        let mut out = vec![Isa::Portable];
        match self.best() {
            Isa::Neon { dotprod: true } => out.push(Isa::Neon { dotprod: false }),
            Isa::Avx2 { avx512: true } => out.push(Isa::Avx2 { avx512: false }),
            _ => {}
        }
        if self.best() != Isa::Portable {
            out.push(self.best());
        }
        out
    }

    /// The path for a `QUILL_CPU` value (`None` or empty: the fastest), refused with a message
    /// that says why where the name is unknown or the CPU lacks the path.
    pub fn choose(self, forced: Option<&str>) -> Result<Isa, String> {
        let name = forced.map(str::trim).unwrap_or_default();
        let wanted = match name.to_ascii_lowercase().as_str() {
            "" => return Ok(self.best()),
            "portable" => Isa::Portable,
            "avx2" => Isa::Avx2 { avx512: false },
            "avx512" => Isa::Avx2 { avx512: true },
            "neon" => Isa::Neon {
                dotprod: self.dotprod,
            },
            _ => {
                return Err(format!(
                    "{ENV}={name:?} is not a CPU path; use portable, avx2, avx512 or neon (or unset it \
                     for the fastest this CPU runs, {})",
                    self.best()
                ))
            }
        };
        if self.supports(wanted) {
            return Ok(wanted);
        }
        let lacks = match wanted {
            Isa::Avx2 { .. } if !cfg!(target_arch = "x86_64") => {
                "this is not an x86-64 build".into()
            }
            Isa::Neon { .. } if !cfg!(target_arch = "aarch64") => {
                "this is not an aarch64 build".into()
            }
            Isa::Avx2 { avx512 } => {
                let missing: Vec<&str> = [
                    ("AVX2", self.avx2),
                    ("FMA", self.fma),
                    ("F16C", self.f16c),
                    ("AVX-512 (F, BW, VL and VNNI)", self.avx512 || !avx512),
                ]
                .into_iter()
                .filter(|(_, has)| !has)
                .map(|(name, _)| name)
                .collect();
                format!("this CPU lacks {}", missing.join(", "))
            }
            _ => "this CPU lacks NEON".into(),
        };
        Err(format!(
            "{ENV}={name} cannot be used: {lacks}; use {ENV}=portable or unset it (the fastest \
             path here is {})",
            self.best()
        ))
    }
}

static CHOSEN: OnceLock<Result<Isa, String>> = OnceLock::new();

/// The path chosen for this process: `QUILL_CPU` if set, else the fastest the CPU runs. An
/// error says why a forced path cannot be used; binaries call this first and exit with it.
pub fn from_env() -> Result<Isa, String> {
    CHOSEN
        .get_or_init(|| Features::detect().choose(std::env::var(ENV).ok().as_deref()))
        .clone()
}

/// The path every kernel runs on. A process whose `QUILL_CPU` is refused stops here with the
/// reason (the quill binary reports it at start instead, through [`from_env`]).
pub fn isa() -> Isa {
    match from_env() {
        Ok(isa) => isa,
        Err(reason) => panic!("{reason}"),
    }
}

/// The paths the kernel tests run: every path this CPU has, or only the one `QUILL_CPU`
/// forces.
pub fn test_paths() -> Vec<Isa> {
    match std::env::var(ENV) {
        Ok(v) if !v.trim().is_empty() => vec![isa()],
        _ => Features::detect().paths(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASWELL: Features = Features {
        avx2: true,
        fma: true,
        f16c: true,
        neon: false,
        dotprod: false,
        avx512: false,
    };

    #[cfg(target_arch = "x86_64")]
    const SAPPHIRE_RAPIDS: Features = Features {
        avx512: true,
        ..HASWELL
    };

    #[test]
    fn the_fastest_path_is_chosen_unless_one_is_forced() {
        let best = if cfg!(target_arch = "x86_64") {
            Isa::Avx2 { avx512: false }
        } else {
            Isa::Portable
        };
        assert_eq!(HASWELL.choose(None), Ok(best));
        assert_eq!(HASWELL.choose(Some("")), Ok(best));
        assert_eq!(HASWELL.choose(Some("portable")), Ok(Isa::Portable));
        assert_eq!(HASWELL.choose(Some(" Portable ")), Ok(Isa::Portable));
        assert_eq!(Features::default().choose(None), Ok(Isa::Portable));
        assert_eq!(Features::default().paths(), vec![Isa::Portable]);
    }

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn avx2_is_refused_on_a_cpu_without_it() {
        let avx2 = Isa::Avx2 { avx512: false };
        assert_eq!(HASWELL.choose(Some("avx2")), Ok(avx2));
        assert_eq!(HASWELL.paths(), vec![Isa::Portable, avx2]);
        // A VM that masks F16C: the AVX2 path would break the kernels' target_feature
        // contract, so it is neither chosen nor accepted.
        let no_f16c = Features {
            f16c: false,
            ..HASWELL
        };
        assert_eq!(no_f16c.best(), Isa::Portable);
        let err = no_f16c.choose(Some("avx2")).unwrap_err();
        assert!(err.contains("QUILL_CPU=avx2 cannot be used"), "{err}");
        assert!(err.contains("lacks F16C"), "{err}");
        assert!(
            !err.contains("AVX2,"),
            "only what is missing is named: {err}"
        );
        let old = Features::default().choose(Some("avx2")).unwrap_err();
        assert!(old.contains("lacks AVX2, FMA, F16C"), "{old}");
        assert!(old.contains("QUILL_CPU=portable"), "{old}");
    }

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn avx512_is_a_flag_on_the_avx2_path() {
        let avx512 = Isa::Avx2 { avx512: true };
        let avx2 = Isa::Avx2 { avx512: false };
        assert_eq!(SAPPHIRE_RAPIDS.best(), avx512);
        assert_eq!(avx512.to_string(), "avx512");
        // The AVX2 kernels stay reachable on such a CPU: for comparisons and the tests.
        assert_eq!(SAPPHIRE_RAPIDS.choose(Some("avx2")), Ok(avx2));
        assert_eq!(SAPPHIRE_RAPIDS.choose(Some("AVX512")), Ok(avx512));
        assert_eq!(SAPPHIRE_RAPIDS.paths(), vec![Isa::Portable, avx2, avx512]);
        let err = HASWELL.choose(Some("avx512")).unwrap_err();
        assert!(err.contains("QUILL_CPU=avx512 cannot be used"), "{err}");
        assert!(err.contains("lacks AVX-512 (F, BW, VL and VNNI)"), "{err}");
        assert!(!err.contains("AVX2,"), "{err}");
        assert!(err.contains("the fastest path here is avx2"), "{err}");
    }

    #[test]
    fn neon_and_unknown_names_are_refused_where_they_do_not_apply() {
        let err = HASWELL.choose(Some("neon")).unwrap_err();
        if cfg!(target_arch = "x86_64") {
            assert!(err.contains("not an aarch64 build"), "{err}");
        }
        let err = HASWELL.choose(Some("sse9")).unwrap_err();
        assert!(err.contains("\"sse9\" is not a CPU path"), "{err}");
        assert!(err.contains("portable, avx2, avx512 or neon"), "{err}");
    }

    #[test]
    #[cfg(target_arch = "aarch64")]
    fn neon_carries_the_dotprod_flag() {
        let m1 = Features {
            neon: true,
            dotprod: true,
            ..Features::default()
        };
        assert_eq!(m1.best(), Isa::Neon { dotprod: true });
        assert_eq!(
            m1.paths(),
            [
                Isa::Portable,
                Isa::Neon { dotprod: false },
                Isa::Neon { dotprod: true }
            ]
        );
        let a72 = Features {
            neon: true,
            ..Features::default()
        };
        assert_eq!(a72.choose(Some("neon")), Ok(Isa::Neon { dotprod: false }));
        assert_eq!(a72.paths(), [Isa::Portable, Isa::Neon { dotprod: false }]);
        assert!(a72
            .choose(Some("avx2"))
            .unwrap_err()
            .contains("not an x86-64 build"));
    }

    #[test]
    fn this_cpus_paths_run() {
        let here = Features::detect();
        for isa in here.paths() {
            assert!(here.supports(isa), "{isa}");
        }
    }
}
