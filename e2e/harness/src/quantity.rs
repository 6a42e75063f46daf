//! Kubernetes quantities, only as far as the harness needs them (CPU in millicores, memory in bytes).

/// `"500m"`, `"2"`, `"0.5"` -> millicores.
pub fn cpu_millis(q: &str) -> Option<i64> {
    let q = q.trim();
    if let Some(m) = q.strip_suffix('m') {
        return m.parse::<f64>().ok().map(|v| v.ceil() as i64);
    }
    q.parse::<f64>().ok().map(|v| (v * 1000.0).ceil() as i64)
}

/// `"4Gi"`, `"512M"`, `"1073741824"` -> bytes.
pub fn memory_bytes(q: &str) -> Option<i64> {
    let q = q.trim();
    const UNITS: [(&str, f64); 12] = [
        ("Ki", 1024.0),
        ("Mi", 1048576.0),
        ("Gi", 1073741824.0),
        ("Ti", 1099511627776.0),
        ("Pi", 1125899906842624.0),
        ("Ei", 1152921504606846976.0),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
        ("P", 1e15),
        ("E", 1e18),
    ];
    for (suffix, mult) in UNITS {
        if let Some(n) = q.strip_suffix(suffix) {
            return n.parse::<f64>().ok().map(|v| (v * mult).ceil() as i64);
        }
    }
    q.parse::<f64>().ok().map(|v| v.ceil() as i64)
}

/// Bytes as a quantity in Mi (rounded up), e.g. `"4306Mi"`.
pub fn mebibytes(bytes: i64) -> String {
    format!("{}Mi", (bytes + 1048575) / 1048576)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_vms_use() {
        assert_eq!(cpu_millis("500m"), Some(500));
        assert_eq!(cpu_millis("2"), Some(2000));
        assert_eq!(cpu_millis("0.25"), Some(250));
        assert_eq!(memory_bytes("4Gi"), Some(4 << 30));
        assert_eq!(memory_bytes("512M"), Some(512_000_000));
        assert_eq!(memory_bytes("1024"), Some(1024));
        assert_eq!(memory_bytes("lots"), None);
        assert_eq!(mebibytes(4 << 30), "4096Mi");
        assert_eq!(mebibytes((4 << 30) + 1), "4097Mi");
    }
}
