//! The values users write in kubedrs' annotations, read in one place so that every reader agrees.

/// `kubedrs.io/maintenance` on a node: `"true"`, in any case and with surrounding spaces ignored, asks for
/// maintenance. Any other value is refused with a message that says what is allowed (the caller reports it
/// on the node and treats the node as not asked).
pub fn maintenance_requested(value: &str) -> Result<bool, String> {
    if value.trim().eq_ignore_ascii_case("true") {
        Ok(true)
    } else {
        Err(format!(
            "{value:?} is not a maintenance request: set \"true\" to enter maintenance, remove the annotation to leave it"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn true_in_any_case_with_spaces_asks_for_maintenance() {
        for v in ["true", "True", "TRUE", " true", "true ", "\ttRuE\n"] {
            assert_eq!(maintenance_requested(v), Ok(true), "{v:?}");
        }
    }

    #[test]
    fn anything_else_is_refused_with_what_is_allowed() {
        for v in ["", "maybe", "yes", "1", "false", "t rue"] {
            let e = maintenance_requested(v).unwrap_err();
            assert!(e.contains("\"true\"") && e.contains("remove the annotation"), "{v:?}: {e}");
        }
    }
}
