//! AWS's own linter, cfn-lint, finds no error and no warning in the
//! templates (it checks every property against the resource
//! specifications, engine versions, dependencies, …). `CFN_LINT` names the
//! executable (scripts/test.sh installs it in a Python venv).

mod common;

use std::process::Command;

#[test]
fn cfn_lint_passes_with_no_errors_or_warnings() {
    let cfn_lint = std::env::var("CFN_LINT")
        .expect("CFN_LINT must name the cfn-lint executable; scripts/test.sh installs it");
    let directory = tempfile::tempdir().unwrap();
    let mut paths = Vec::new();
    for stage in ["dev", "prod"] {
        let path = directory.path().join(format!("{stage}.json"));
        std::fs::write(&path, serde_json::to_string_pretty(&common::template(stage)).unwrap()).unwrap();
        paths.push(path);
    }
    let output = Command::new(&cfn_lint)
        .arg("--format")
        .arg("parseable")
        .args(&paths)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cfn_lint}: {e}"));
    let findings = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && findings.trim().is_empty(),
        "cfn-lint found:\n{findings}{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn cfn_lint_would_report_a_broken_template() {
    let cfn_lint = std::env::var("CFN_LINT").expect("CFN_LINT");
    let mut template = common::template("dev");
    template["Resources"]["ReadingsStream"]["Properties"]["RetentionPeriodHours"] = "a day".into();
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("broken.json");
    std::fs::write(&path, template.to_string()).unwrap();
    let output = Command::new(&cfn_lint).arg("--format").arg("parseable").arg(&path).output().unwrap();
    let findings = String::from_utf8_lossy(&output.stdout);
    assert!(!output.status.success());
    assert!(findings.contains("E3012:'a day' is not of type 'integer'"), "{findings}");
}
