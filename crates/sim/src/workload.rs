//! What each VM demands over time: steady, diurnal and spiky patterns, and real traces (PlanetLab CPU, Bitbrains
//! CPU and memory, 5-minute samples, interpolated between samples and replayed from the start when the run is
//! longer than the trace). A pattern gives a utilisation in 0..=1 of the VM's vCPUs or guest memory; noise is a
//! pure function of (seed, VM, time), so adding a VM does not change the others' load.

use std::collections::HashMap;
use std::f64::consts::PI;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Seconds between two samples of the shipped traces.
pub const TRACE_SAMPLE_SECS: f64 = 300.0;

/// A demand pattern: utilisation (0..=1) as a function of time in seconds.
#[derive(Debug, Clone, PartialEq)]
pub enum Pattern {
    Steady(f64),
    /// A cosine between `min` and `max`, highest at `peak` (seconds into each period).
    Diurnal {
        min: f64,
        max: f64,
        period: f64,
        peak: f64,
    },
    /// `base`, raised to `level` for `duration` from `at`, again every `every` if given.
    Spikes {
        base: f64,
        level: f64,
        at: f64,
        duration: f64,
        every: Option<f64>,
    },
    /// Samples every 5 minutes, times `scale`.
    Trace {
        samples: Arc<Vec<f64>>,
        scale: f64,
    },
}

impl Pattern {
    pub fn at(&self, t: f64) -> f64 {
        let v = match self {
            Pattern::Steady(v) => *v,
            Pattern::Diurnal { min, max, period, peak } => {
                let phase = 2.0 * PI * (t - peak) / period;
                min + (max - min) * (1.0 + phase.cos()) / 2.0
            }
            Pattern::Spikes { base, level, at, duration, every } => {
                let since = t - at;
                let within = match every {
                    _ if since < 0.0 => false,
                    Some(every) => since.rem_euclid(*every) < *duration,
                    None => since < *duration,
                };
                if within { *level } else { *base }
            }
            Pattern::Trace { samples, scale } => {
                if samples.is_empty() {
                    return 0.0;
                }
                let n = samples.len();
                let x = (t / TRACE_SAMPLE_SECS).max(0.0);
                let i = x.floor() as usize;
                let frac = x - i as f64;
                let a = samples[i % n];
                let b = samples[(i + 1) % n];
                (a + (b - a) * frac) * scale
            }
        };
        v.clamp(0.0, 1.0)
    }
}

/// A VM's CPU and memory patterns, with its noise and time shift.
#[derive(Debug, Clone, PartialEq)]
pub struct Workload {
    pub cpu: Pattern,
    pub memory: Pattern,
    /// Relative noise: each sample is multiplied by 1 + noise * u, u uniform in -1..1.
    pub noise: f64,
    /// Seconds this VM runs ahead of its group's pattern (`stagger` times its index in the group).
    pub shift: f64,
}

impl Default for Workload {
    fn default() -> Self {
        Workload { cpu: Pattern::Steady(0.25), memory: Pattern::Steady(0.5), noise: 0.0, shift: 0.0 }
    }
}

impl Workload {
    /// CPU and memory utilisation at `t` (seconds) for the VM numbered `key`, under `seed`.
    pub fn at(&self, t: f64, seed: u64, key: u64) -> (f64, f64) {
        let t = t + self.shift;
        let mut cpu = self.cpu.at(t);
        let mut memory = self.memory.at(t);
        if self.noise > 0.0 {
            let step = t.max(0.0) as u64;
            cpu *= 1.0 + self.noise * unit(seed, key, step, 1);
            // Memory working sets move much less than CPU from one minute to the next.
            memory *= 1.0 + self.noise * 0.25 * unit(seed, key, step, 2);
        }
        (cpu.clamp(0.0, 1.0), memory.clamp(0.0, 1.0))
    }
}

/// A number in -1..1 that depends only on its inputs (SplitMix64 finaliser).
fn unit(seed: u64, key: u64, t: u64, stream: u64) -> f64 {
    let mut z = seed
        ^ key.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ t.wrapping_mul(0xC2B2_AE3D_27D4_EB4F)
        ^ stream.wrapping_mul(0x1656_67B1_9E37_79F9);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
}

/// One Bitbrains VM: utilisation of its provisioned CPU and memory.
#[derive(Debug)]
pub struct BitbrainsVm {
    pub cpu: Arc<Vec<f64>>,
    pub memory: Arc<Vec<f64>>,
}

/// Loads trace files once and hands out their series.
#[derive(Debug)]
pub struct TraceStore {
    pub dir: PathBuf,
    /// How many 5-minute samples a run needs (a Bitbrains file holds a month; read only that much).
    pub samples_needed: usize,
    planetlab: HashMap<String, Arc<Vec<Arc<Vec<f64>>>>>,
    bitbrains: HashMap<u32, Arc<BitbrainsVm>>,
}

impl TraceStore {
    pub fn new(dir: PathBuf, samples_needed: usize) -> Self {
        TraceStore { dir, samples_needed: samples_needed.max(2), planetlab: HashMap::new(), bitbrains: HashMap::new() }
    }

    /// Row `row` of PlanetLab day `day` (e.g. `20110303`), as fractions of the VM's CPU.
    pub fn planetlab(&mut self, day: &str, row: usize) -> Result<Arc<Vec<f64>>, String> {
        if !self.planetlab.contains_key(day) {
            let rows = read_planetlab(&self.dir.join("planetlab"), day)?;
            self.planetlab.insert(day.to_string(), Arc::new(rows));
        }
        let rows = &self.planetlab[day];
        rows.get(row).cloned().ok_or_else(|| {
            format!("PlanetLab day {day} has {} VMs (rows 0..{}); row {row} does not exist", rows.len(), rows.len())
        })
    }

    /// Bitbrains VM number `id` (1..=500).
    pub fn bitbrains(&mut self, id: u32) -> Result<Arc<BitbrainsVm>, String> {
        if let Some(vm) = self.bitbrains.get(&id) {
            return Ok(vm.clone());
        }
        let file = self.dir.join("bitbrains-rnd-2013-7").join(format!("{id:03}.csv.gz"));
        let vm = Arc::new(read_bitbrains(&file, self.samples_needed)?);
        self.bitbrains.insert(id, vm.clone());
        Ok(vm)
    }
}

/// Day `day` of the PlanetLab traces in `dir`: `{day}.csv.gz` (as shipped in `data/traces`) or a plain `{day}.csv`.
fn read_planetlab(dir: &Path, day: &str) -> Result<Vec<Arc<Vec<f64>>>, String> {
    let gz = dir.join(format!("{day}.csv.gz"));
    let plain = dir.join(format!("{day}.csv"));
    let (file, text) = if gz.is_file() {
        let mut text = String::new();
        std::fs::File::open(&gz)
            .and_then(|f| flate2::read::GzDecoder::new(f).read_to_string(&mut text))
            .map_err(|e| format!("cannot read {}: {e}", gz.display()))?;
        (gz, text)
    } else {
        let text = std::fs::read_to_string(&plain).map_err(|e| {
            format!("cannot read {}: {e}; days available: {}", plain.display(), available(dir, &[".csv.gz", ".csv"]))
        })?;
        (plain, text)
    };
    let mut rows = Vec::new();
    for (n, line) in text.lines().enumerate().skip(1) {
        let mut cells = line.split(',');
        cells.next(); // VM name
        let row: Result<Vec<f64>, _> = cells.map(|c| c.trim().parse::<f64>().map(|p| p / 100.0)).collect();
        let row = row.map_err(|e| format!("{} line {}: {e}", file.display(), n + 1))?;
        rows.push(Arc::new(row));
    }
    Ok(rows)
}

fn read_bitbrains(file: &Path, limit: usize) -> Result<BitbrainsVm, String> {
    let f = std::fs::File::open(file).map_err(|e| format!("cannot read {}: {e}; VMs are 001..500", file.display()))?;
    let reader = BufReader::new(flate2::read::GzDecoder::new(f));
    let (mut cpu, mut memory) = (Vec::new(), Vec::new());
    for (n, line) in reader.lines().enumerate().skip(1).take(limit) {
        let line = line.map_err(|e| format!("{}: {e}", file.display()))?;
        let c: Vec<f64> = line.split(',').map(|x| x.trim().parse::<f64>().unwrap_or(f64::NAN)).collect();
        if c.len() < 6 || c.iter().any(|x| x.is_nan()) {
            return Err(format!(
                "{} line {}: expected t_s,cores,cpu_cap_mhz,cpu_used_mhz,mem_cap_kb,mem_used_kb",
                file.display(),
                n + 1
            ));
        }
        cpu.push(if c[2] > 0.0 { c[3] / c[2] } else { 0.0 });
        memory.push(if c[4] > 0.0 { c[5] / c[4] } else { 0.0 });
    }
    Ok(BitbrainsVm { cpu: Arc::new(cpu), memory: Arc::new(memory) })
}

/// Names in `dir` ending in one of `suffixes` (without it), for error messages.
fn available(dir: &Path, suffixes: &[&str]) -> String {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| {
                    let n = e.file_name().to_str()?.to_string();
                    suffixes.iter().find_map(|s| n.strip_suffix(s).map(String::from))
                })
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names.dedup();
    if names.is_empty() { format!("none (no {})", dir.display()) } else { names.join(", ") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diurnal_peaks_where_asked() {
        let p = Pattern::Diurnal { min: 0.2, max: 0.8, period: 86400.0, peak: 14.0 * 3600.0 };
        assert!((p.at(14.0 * 3600.0) - 0.8).abs() < 1e-9);
        assert!((p.at(2.0 * 3600.0) - 0.2).abs() < 1e-9);
    }

    #[test]
    fn spikes_start_last_and_repeat() {
        let p = Pattern::Spikes { base: 0.1, level: 0.9, at: 3600.0, duration: 600.0, every: Some(7200.0) };
        assert_eq!(p.at(0.0), 0.1);
        assert_eq!(p.at(3600.0), 0.9);
        assert_eq!(p.at(4200.0), 0.1);
        assert_eq!(p.at(3600.0 + 7200.0 + 10.0), 0.9);
        let once = Pattern::Spikes { base: 0.1, level: 0.9, at: 3600.0, duration: 600.0, every: None };
        assert_eq!(once.at(3600.0 + 7200.0), 0.1);
    }

    #[test]
    fn traces_interpolate_and_wrap() {
        let p = Pattern::Trace { samples: Arc::new(vec![0.0, 0.5, 1.0]), scale: 1.0 };
        assert!((p.at(150.0) - 0.25).abs() < 1e-9);
        assert!((p.at(900.0) - 0.0).abs() < 1e-9);
    }

    #[test]
    fn noise_is_deterministic_and_bounded() {
        let w = Workload { noise: 0.2, ..Workload::default() };
        assert_eq!(w.at(600.0, 7, 3), w.at(600.0, 7, 3));
        assert_ne!(w.at(600.0, 7, 3), w.at(600.0, 7, 4));
        for t in 0..500 {
            let (c, m) = w.at(t as f64 * 60.0, 1, 1);
            assert!((0.2..=0.3).contains(&c) && (0.0..=1.0).contains(&m), "{c} {m}");
        }
    }
}
