//! Every ftpsgate configuration the project ships passes `ftpsgate check`:
//! `examples/*.yaml`, `deploy/*.yaml`, `deploy/container/*.yaml` and the YAML
//! embedded in the Kubernetes ConfigMaps under `deploy/kubernetes/`. The
//! Kubernetes manifests themselves parse, name their apiVersion, kind and
//! name, validate strictly against the Kubernetes API schemas (oldest and
//! newest that `kubernetes-validate` bundles), keep their workloads
//! unprivileged, and agree with the configs they carry: each client-facing Service exposes exactly its replica's control
//! ports and passive range (same port inside and out) on its
//! `public_address`, and the probes hit the configured metrics port.
//!
//! Certificates: a shipped config may name a certificate, key or client CA
//! that exists only where it is deployed (`/etc/ftpsgate/tls/tls.crt`). For
//! those, the test writes a copy whose missing paths point at a pair it
//! generated with `ftpsgate cert`, and checks the copy; every other key is
//! checked as shipped. Configs naming no missing file are checked in place.
//! And `examples/ftpsgate.yaml` shows every key the parser knows.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;
use serde_yaml::Value;

#[path = "support/tools/mod.rs"]
mod tools;

/// One ftpsgate config: where it came from and its text.
struct Shipped {
    name: String,
    file: Option<PathBuf>,
    text: String,
}

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// The `*.yaml` files directly in `dir`, or below it with `recursive`.
fn yaml_files(dir: &Path, recursive: bool) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() && recursive {
            files.extend(yaml_files(&path, true));
        } else if path.extension().is_some_and(|e| e == "yaml") {
            files.push(path);
        }
    }
    files.sort();
    files
}

/// Every document of every manifest under `deploy/kubernetes/`, with its file.
fn manifests() -> Vec<(String, Value)> {
    let mut docs = Vec::new();
    for path in yaml_files(&repo("deploy/kubernetes"), true) {
        let text = std::fs::read_to_string(&path).unwrap();
        let name = path.strip_prefix(repo("")).unwrap().display().to_string();
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let value = Value::deserialize(doc).unwrap_or_else(|e| panic!("{name}: {e}"));
            docs.push((name.clone(), value));
        }
    }
    docs
}

fn of_kind<'a>(docs: &'a [(String, Value)], kind: &str) -> Vec<&'a Value> {
    docs.iter()
        .filter(|(_, d)| d["kind"] == kind)
        .map(|(_, d)| d)
        .collect()
}

fn text(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v:?}"))
}

/// Every shipped ftpsgate config: the files, then each `*.yaml` key of each
/// ConfigMap.
fn shipped() -> Vec<Shipped> {
    let mut all = Vec::new();
    for dir in ["examples", "deploy", "deploy/container"] {
        for file in yaml_files(&repo(dir), false) {
            all.push(Shipped {
                name: file.strip_prefix(repo("")).unwrap().display().to_string(),
                text: std::fs::read_to_string(&file).unwrap(),
                file: Some(file),
            });
        }
    }
    for (file, doc) in manifests() {
        if doc["kind"] != "ConfigMap" {
            continue;
        }
        let map = doc["data"].as_mapping().expect("ConfigMap data");
        for (key, value) in map {
            if text(key).ends_with(".yaml") {
                all.push(Shipped {
                    name: format!("{file}: {}/{}", text(&doc["metadata"]["name"]), text(key)),
                    file: None,
                    text: text(value).to_owned(),
                });
            }
        }
    }
    all
}

/// The file to run `check` on: the shipped file itself, or a copy in `tmp`
/// whose missing certificate files are replaced by `cert`/`key`.
fn checkable(config: &Shipped, index: usize, tmp: &Path, pair: (&Path, &Path)) -> PathBuf {
    let mut value: Value = serde_yaml::from_str(&config.text)
        .unwrap_or_else(|e| panic!("{}: not YAML: {e}", config.name));
    let mut substituted = false;
    for (key, with) in [("cert", pair.0), ("key", pair.1), ("client_ca", pair.0)] {
        if let Some(path) = value.get(key).and_then(Value::as_str) {
            if !Path::new(path).exists() {
                value[key] = Value::from(with.display().to_string());
                substituted = true;
            }
        }
    }
    match &config.file {
        Some(file) if !substituted => file.clone(),
        _ => {
            let copy = tmp.join(format!("shipped-{index}.yaml"));
            std::fs::write(&copy, serde_yaml::to_string(&value).unwrap()).unwrap();
            copy
        }
    }
}

#[test]
fn every_shipped_config_passes_check() {
    let configs = shipped();
    let names: Vec<&str> = configs.iter().map(|c| c.name.as_str()).collect();
    // 3 examples, deploy/ftpsgate.yaml, the container's, 1 + 2 in ConfigMaps.
    assert!(configs.len() >= 8, "too few configs found: {names:?}");
    assert!(
        names
            .iter()
            .any(|n| n.contains("ftpsgate-replicas/ftpsgate-1.yaml")),
        "{names:?}"
    );
    let tmp = tempfile::tempdir().unwrap();
    let (cert, key) = (tmp.path().join("cert.pem"), tmp.path().join("key.pem"));
    let out = Command::new(env!("CARGO_BIN_EXE_ftpsgate"))
        .args(["cert", "--hostname", "ftp.example.com", "--cert-out"])
        .arg(&cert)
        .arg("--key-out")
        .arg(&key)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    for (index, config) in configs.iter().enumerate() {
        let file = checkable(config, index, tmp.path(), (&cert, &key));
        let out = Command::new(env!("CARGO_BIN_EXE_ftpsgate"))
            .args(["check", "--config"])
            .arg(&file)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}: {}",
            config.name,
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!("{}: ok\n", file.display()),
            "{}",
            config.name
        );
    }
}

#[test]
fn every_kubernetes_manifest_names_api_version_kind_and_name() {
    let docs = manifests();
    assert!(docs.len() >= 9, "too few manifests: {}", docs.len());
    for (file, doc) in &docs {
        for field in [&doc["apiVersion"], &doc["kind"], &doc["metadata"]["name"]] {
            assert!(
                field.as_str().is_some_and(|s| !s.is_empty()),
                "{file}: apiVersion, kind and metadata.name must be set: {doc:?}"
            );
        }
    }
    let kinds: BTreeSet<&str> = docs.iter().map(|(_, d)| text(&d["kind"])).collect();
    let want = [
        "ConfigMap",
        "Deployment",
        "Secret",
        "Service",
        "StatefulSet",
    ];
    assert_eq!(kinds, want.into_iter().collect());
}

#[test]
fn every_kubernetes_manifest_validates_against_the_api_schemas() {
    if !tools::tool_available("kubernetes-validate") {
        return;
    }
    let files = yaml_files(&repo("deploy/kubernetes"), true);
    assert!(files.len() >= 7, "{files:?}");
    // Strict: a misspelt field (readOnlyRootFileSystem) is an error, not
    // silently ignored as the API server's non-strict decoding would.
    for version in ["1.25.0", "1.37.0"] {
        let out = Command::new(tools::python())
            .args(["-m", "kubernetes_validate", "--strict", "--quiet"])
            .args(["--kubernetes-version", version])
            .args(&files)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "Kubernetes {version}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn workloads_run_unprivileged_and_probe_the_metrics_port() {
    let docs = manifests();
    let workloads: Vec<&Value> = ["Deployment", "StatefulSet"]
        .iter()
        .flat_map(|k| of_kind(&docs, k))
        .collect();
    assert_eq!(workloads.len(), 2);
    for w in workloads {
        let name = text(&w["metadata"]["name"]);
        let pod = &w["spec"]["template"]["spec"];
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{name}");
        assert_eq!(pod["securityContext"]["runAsUser"], 65532, "{name}");
        let containers = pod["containers"].as_sequence().unwrap();
        assert_eq!(containers.len(), 1, "{name}");
        let c = &containers[0];
        let sc = &c["securityContext"];
        assert_eq!(sc["readOnlyRootFilesystem"], true, "{name}");
        assert_eq!(sc["allowPrivilegeEscalation"], false, "{name}");
        assert_eq!(
            sc["capabilities"],
            serde_yaml::from_str::<Value>("drop: [ALL]").unwrap()
        );
        assert!(c["resources"]["requests"]["memory"].is_string(), "{name}");
        assert!(c["resources"]["limits"]["memory"].is_string(), "{name}");
        assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz", "{name}");
        assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz", "{name}");
        assert_eq!(c["readinessProbe"]["httpGet"]["port"], "metrics", "{name}");
        assert_eq!(c["livenessProbe"]["httpGet"]["port"], "metrics", "{name}");
        for pod_name in pod_names(w) {
            let config = pod_config(&docs, w, &pod_name);
            assert_eq!(
                Some(container_port(c, "metrics")),
                port_of(&config["metrics"]),
                "{pod_name}: probes reach the configured metrics port"
            );
            for key in ["cert", "key"] {
                let path = text(&config[key]);
                assert!(
                    mounted_file(&docs, w, path, "Secret").is_some(),
                    "{pod_name}: {key} {path} comes from the certificate Secret"
                );
            }
        }
    }
}

#[test]
fn each_replica_has_a_service_with_its_control_ports_and_passive_range() {
    let docs = manifests();
    let services: Vec<&Value> = of_kind(&docs, "Service")
        .into_iter()
        .filter(|s| s["spec"]["type"] == "LoadBalancer")
        .collect();
    let mut served = Vec::new();
    let mut replicas = Vec::new();
    for w in ["Deployment", "StatefulSet"]
        .iter()
        .flat_map(|k| of_kind(&docs, k))
    {
        for pod_name in pod_names(w) {
            let selecting: Vec<&&Value> = services
                .iter()
                .filter(|s| selects(s, w, &pod_name))
                .collect();
            assert_eq!(selecting.len(), 1, "{pod_name}: one Service of its own");
            let config = pod_config(&docs, w, &pod_name);
            assert_service_matches(selecting[0], w, &config, &pod_name);
            served.push(passive_range(&config));
            if w["kind"] == "StatefulSet" {
                replicas.push(config);
            }
        }
    }
    assert_eq!(
        served.len(),
        3,
        "the Deployment's pod and two StatefulSet pods"
    );
    // The StatefulSet's replicas use disjoint slices, and apart from the
    // address and the slice their configs are the same.
    let (a, b) = (&served[1], &served[2]);
    assert!(a.end() < b.start() || b.end() < a.start(), "{a:?} {b:?}");
    for config in &mut replicas {
        let map = config.as_mapping_mut().unwrap();
        map.remove("public_address").unwrap();
        map.remove("passive_ports").unwrap();
    }
    assert_eq!(replicas[0], replicas[1]);
}

/// The Service gives the pod's config what it needs: 21 and 990 onto the
/// listeners, every passive port 1:1, the config's public address, and the
/// client's source address preserved for the data connection peer check.
fn assert_service_matches(service: &Value, workload: &Value, config: &Value, pod: &str) {
    let spec = &service["spec"];
    let c = &workload["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(spec["externalTrafficPolicy"], "Local", "{pod}");
    assert_eq!(spec["loadBalancerIP"], config["public_address"], "{pod}");
    let mut passive = BTreeSet::new();
    for port in spec["ports"].as_sequence().unwrap() {
        let name = text(&port["name"]);
        let target = port["targetPort"].as_u64().expect("numeric targetPort");
        match name {
            "ftp" | "ftps" => {
                let (public, key) = if name == "ftp" {
                    (21, "listen")
                } else {
                    (990, "implicit_listen")
                };
                assert_eq!(port["port"], public, "{pod}: {name}");
                assert_eq!(target, container_port(c, name), "{pod}: {name}");
                assert_eq!(Some(target), port_of(&config[key][0]), "{pod}: {name}");
            }
            _ if name.starts_with("pasv-") => {
                assert_eq!(port["port"].as_u64(), Some(target), "{pod}: {name}");
                assert_eq!(name, format!("pasv-{target}"), "{pod}");
                passive.insert(target);
            }
            other => panic!("{pod}: unexpected port {other}"),
        }
    }
    assert_eq!(
        passive,
        passive_range(config).collect::<BTreeSet<u64>>(),
        "{pod}: the Service exposes exactly passive_ports"
    );
}

/// Pod names: one (the template) for a Deployment, `<name>-<i>` for a
/// StatefulSet.
fn pod_names(workload: &Value) -> Vec<String> {
    let name = text(&workload["metadata"]["name"]);
    match text(&workload["kind"]) {
        "StatefulSet" => {
            let n = workload["spec"]["replicas"].as_u64().unwrap();
            (0..n).map(|i| format!("{name}-{i}")).collect()
        }
        _ => vec![name.to_owned()],
    }
}

/// Whether `service` selects pod `pod` of `workload`: by the StatefulSet
/// pod-name label, or by labels the pod template carries.
fn selects(service: &Value, workload: &Value, pod: &str) -> bool {
    let selector = service["spec"]["selector"].as_mapping().unwrap();
    let labels = &workload["spec"]["template"]["metadata"]["labels"];
    selector.iter().all(|(k, v)| match text(k) {
        "statefulset.kubernetes.io/pod-name" => workload["kind"] == "StatefulSet" && text(v) == pod,
        k => labels[k] == *v,
    })
}

/// The config pod `pod` of `workload` reads: `--config PATH` of its args
/// (with `$(POD_NAME)` expanded), a key of a mounted ConfigMap.
fn pod_config(docs: &[(String, Value)], workload: &Value, pod: &str) -> Value {
    let c = &workload["spec"]["template"]["spec"]["containers"][0];
    let args: Vec<&str> = c["args"].as_sequence().unwrap().iter().map(text).collect();
    let at = args
        .iter()
        .position(|a| *a == "--config")
        .expect("--config");
    let path = args[at + 1].replace("$(POD_NAME)", pod);
    let yaml = mounted_file(docs, workload, &path, "ConfigMap")
        .unwrap_or_else(|| panic!("{pod}: {path} is in no mounted ConfigMap"));
    serde_yaml::from_str(&yaml).unwrap()
}

/// The text of file `path` in the container of `workload` when a projected
/// volume puts it there from a `kind` (ConfigMap or Secret) manifest.
fn mounted_file(
    docs: &[(String, Value)],
    workload: &Value,
    path: &str,
    kind: &str,
) -> Option<String> {
    let spec = &workload["spec"]["template"]["spec"];
    let (dir, file) = path.rsplit_once('/')?;
    let mounts = spec["containers"][0]["volumeMounts"].as_sequence()?;
    let volumes = spec["volumes"].as_sequence()?;
    let source_key = if kind == "ConfigMap" {
        "configMap"
    } else {
        "secret"
    };
    for mount in mounts {
        let Some(rel) = path
            .strip_prefix(text(&mount["mountPath"]))
            .and_then(|r| r.strip_prefix('/'))
        else {
            continue;
        };
        let volume = volumes.iter().find(|v| v["name"] == mount["name"])?;
        for source in volume["projected"]["sources"].as_sequence()? {
            let from = &source[source_key];
            let key = match from["items"].as_sequence() {
                _ if from.is_null() => continue,
                Some(items) => match items.iter().find(|i| i["path"] == rel) {
                    Some(item) => text(&item["key"]).to_owned(),
                    None => continue,
                },
                None if dir == text(&mount["mountPath"]) => file.to_owned(),
                None => continue,
            };
            let manifest = of_kind(docs, kind)
                .into_iter()
                .find(|m| m["metadata"]["name"] == from["name"])?;
            // A Secret written by `kubectl create secret --dry-run -o yaml`
            // has `data` (base64); the placeholder has `stringData`.
            for field in ["data", "stringData"] {
                if let Some(text) = manifest[field][key.as_str()].as_str() {
                    return Some(text.to_owned());
                }
            }
        }
    }
    None
}

fn container_port(container: &Value, name: &str) -> u64 {
    container["ports"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .and_then(|p| p["containerPort"].as_u64())
        .unwrap_or_else(|| panic!("no container port {name}"))
}

/// The port of an `IP:PORT` config value.
fn port_of(v: &Value) -> Option<u64> {
    let addr: SocketAddr = v.as_str()?.parse().ok()?;
    Some(u64::from(addr.port()))
}

fn passive_range(config: &Value) -> std::ops::RangeInclusive<u64> {
    let range = text(&config["passive_ports"]);
    let (low, high) = range.split_once('-').unwrap();
    low.parse().unwrap()..=high.parse().unwrap()
}

/// `examples/ftpsgate.yaml` promises every key, annotated: each key the file
/// parser knows (it lists them when it meets an unknown one) is set or shown
/// commented out there.
#[test]
fn the_annotated_example_names_every_key() {
    let dir = tempfile::tempdir().unwrap();
    let probe = dir.path().join("probe.yaml");
    std::fs::write(&probe, "no_such_key: 1\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ftpsgate"))
        .args(["check", "--config"])
        .arg(&probe)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    let known = err
        .split_once("known keys: ")
        .unwrap_or_else(|| panic!("no key list in {err}"))
        .1
        .trim();
    let keys: Vec<&str> = known.split(", ").collect();
    assert!(keys.len() > 40, "{keys:?}");
    let example = std::fs::read_to_string(repo("examples/ftpsgate.yaml")).unwrap();
    let shown = |key: &str| {
        example.lines().any(|l| {
            let l = l.trim_start_matches('#').trim_start();
            l.strip_prefix(key)
                .is_some_and(|rest| rest.starts_with(':'))
        })
    };
    let missing: Vec<&&str> = keys.iter().filter(|k| !shown(k)).collect();
    assert!(
        missing.is_empty(),
        "not in examples/ftpsgate.yaml: {missing:?}"
    );
}
