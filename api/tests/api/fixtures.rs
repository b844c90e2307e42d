//! Configuration packages that make runs and builds behave in a given way.

use crate::configurations::{package_of, template_files};

/// The template with `code` run at the start of every engine run, in the
/// configuration's `on_run_start` hook (per run even in a warm engine, which
/// imports the configuration once). `os` and `sys` are imported.
pub fn run_code_package(code: &str) -> Vec<u8> {
    package_of(&[("src/ade_config/hooks.py", &hooks_with(code))])
}

/// The template's `hooks.py` with `code` in its `on_run_start(run)`.
pub fn hooks_with(code: &str) -> String {
    let hooks = template_files()
        .into_iter()
        .find(|(p, _)| p == "src/ade_config/hooks.py")
        .map(|(_, c)| c)
        .expect("the template has src/ade_config/hooks.py");
    let body: Vec<String> = code.lines().map(|l| format!("    {l}")).collect();
    format!(
        "{hooks}\n\ndef on_run_start(run):\n    import os, sys\n    run.state['tables'] = 0\n{}\n",
        body.join("\n")
    )
}

/// The template with `code` at the top level of its `hooks.py`: it runs
/// when the configuration is imported (once per warm engine, once per
/// spawned run). `os` and `sys` are imported.
pub fn import_code_package(code: &str) -> Vec<u8> {
    let hooks = hooks_with("pass");
    let module = format!("import os, sys\n{code}\n{hooks}");
    package_of(&[("src/ade_config/hooks.py", &module)])
}

/// Runs that start a sleeping process with `marker` in its command line
/// and sleep themselves, printing nothing.
pub fn silent_sleeper_package(marker: &str) -> Vec<u8> {
    run_code_package(&format!(
        "import subprocess, time\n\
         subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)', '{marker}'])\n\
         time.sleep(600)"
    ))
}

/// Runs that print NUL characters and invalid UTF-8, and send an engine
/// event with a NUL in it.
pub fn nul_package() -> Vec<u8> {
    run_code_package(
        r#"import sys
sys.stdout.buffer.write(b"nul:\x00 bad:\xff\xfe end\n")
sys.stdout.flush()
sys.stderr.buffer.write(b"\x00\x00\n")
sys.stderr.flush()
os.write(int(os.environ["ADE_EVENTS_FD"]), b'{"type": "run.progress", "payload": {"note": "a\\u0000b"}}\n')"#,
    )
}

/// A package whose wheel is built by an in-tree backend that takes
/// `seconds` (so a build can be caught in its `install_config` phase).
pub fn slow_build_package(seconds: f64) -> Vec<u8> {
    let pyproject = r#"[project]
name = "ade-config"
version = "0.1.0"
requires-python = ">=3.10"
dependencies = []

[build-system]
requires = []
build-backend = "slow_backend"
backend-path = ["."]
"#;
    let backend = SLOW_BACKEND.replace("SECONDS", &seconds.to_string());
    package_of(&[("pyproject.toml", pyproject), ("slow_backend.py", &backend)])
}

/// A package that depends on `adepin==1.0` (see [`local_wheel`]).
pub fn pinned_package() -> Vec<u8> {
    let pyproject = template_files()
        .into_iter()
        .find(|(p, _)| p == "pyproject.toml")
        .map(|(_, c)| c)
        .unwrap();
    let pyproject = pyproject.replacen("dependencies = []", "dependencies = [\"adepin==1.0\"]", 1);
    assert!(
        pyproject.contains("adepin"),
        "the template declares `dependencies = []`"
    );
    package_of(&[("pyproject.toml", &pyproject)])
}

/// Writes the wheel `adepin-1.0-py3-none-any.whl` into `dir` (for `UV_FIND_LINKS`).
pub fn local_wheel(dir: &std::path::Path) {
    std::fs::create_dir_all(dir).unwrap();
    let script = r#"
import base64, hashlib, sys, zipfile
files = {"adepin/__init__.py": b"VALUE = 42\n",
         "adepin-1.0.dist-info/METADATA": b"Metadata-Version: 2.1\nName: adepin\nVersion: 1.0\n",
         "adepin-1.0.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
def line(path, data):
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{path},sha256={digest},{len(data)}"
record = [line(p, d) for p, d in files.items()] + ["adepin-1.0.dist-info/RECORD,,"]
files["adepin-1.0.dist-info/RECORD"] = ("\n".join(record) + "\n").encode()
with zipfile.ZipFile(sys.argv[1] + "/adepin-1.0-py3-none-any.whl", "w") as z:
    for p, d in files.items():
        z.writestr(p, d)
"#;
    let status = std::process::Command::new("python3")
        .args(["-c", script])
        .arg(dir)
        .status()
        .unwrap();
    assert!(status.success());
}

/// A PEP 517 backend that sleeps, then builds the `ade_config` wheel.
const SLOW_BACKEND: &str = r#"import base64, hashlib, os, time, zipfile

def get_requires_for_build_wheel(config_settings=None):
    return []

def _line(path, data):
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{path},sha256={digest},{len(data)}"

def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    time.sleep(SECONDS)
    files = {}
    for root, _, names in os.walk("src/ade_config"):
        for n in names:
            if not n.endswith(".pyc"):
                path = os.path.join(root, n)
                with open(path, "rb") as f:
                    files[os.path.relpath(path, "src")] = f.read()
    dist = "ade_config-0.1.0.dist-info"
    files[dist + "/METADATA"] = b"Metadata-Version: 2.1\nName: ade-config\nVersion: 0.1.0\n"
    files[dist + "/WHEEL"] = b"Wheel-Version: 1.0\nGenerator: slow\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    record = [_line(p, d) for p, d in files.items()] + [dist + "/RECORD,,"]
    files[dist + "/RECORD"] = ("\n".join(record) + "\n").encode()
    name = "ade_config-0.1.0-py3-none-any.whl"
    with zipfile.ZipFile(os.path.join(wheel_directory, name), "w") as z:
        for p, d in files.items():
            z.writestr(p, d)
    return name
"#;
