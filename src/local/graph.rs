//! Dereferencing before anything runs: every reference between the manifests points at one of them, every
//! file a spec names exists, and the references form no cycle. The result is the order to run them in.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::manifest::{Key, Manifest, Problem, Resource};

/// A reference from one manifest to another: the field that holds it and the object it names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reference {
    pub field: &'static str,
    pub target: Key,
}

/// The other resources a manifest needs finished before it can run.
pub fn references(m: &Manifest) -> Vec<Reference> {
    let ns = m.key.namespace.clone();
    let to = |kind: &'static str, name: &str| Key {
        kind,
        namespace: ns.clone(),
        name: name.to_string(),
    };
    match &m.resource {
        Resource::Dataset(_) => Vec::new(),
        Resource::TrainingRun(tr) => vec![Reference {
            field: "spec.datasetRef.name",
            target: to("Dataset", &tr.spec.dataset_ref.name),
        }],
        Resource::ModelServing(ms) => ms
            .spec
            .model
            .training_run_ref
            .iter()
            .map(|r| Reference {
                field: "spec.model.trainingRunRef.name",
                target: to("TrainingRun", &r.name),
            })
            .collect(),
    }
}

/// Where a relative path of a spec is found locally: next to its manifest, else under the artifact folder
/// (which is laid out like the cluster's artifact volume).
pub fn resolve(path: &str, manifest_dir: &Path, artifacts: &Path) -> Option<PathBuf> {
    let p = Path::new(path);
    if p.is_absolute() {
        return p.exists().then(|| p.to_path_buf());
    }
    [manifest_dir.join(p), artifacts.join(p)]
        .into_iter()
        .find(|c| c.exists())
}

/// Files the specs name that must exist before the run starts.
fn missing_files(m: &Manifest, artifacts: &Path) -> Vec<Problem> {
    let mut problems = Vec::new();
    let mut need = |field: String, path: &str| {
        if resolve(path, m.dir(), artifacts).is_none() {
            problems.push(problem(
                m,
                &field,
                format!(
                    "{path} does not exist (looked next to the manifest, in {}, and under the artifact folder {})",
                    m.dir().display(),
                    artifacts.display()
                ),
            ));
        }
    };
    match &m.resource {
        Resource::Dataset(ds) => {
            for (i, s) in ds.spec.sources.iter().enumerate() {
                if let Some(p) = &s.path {
                    need(format!("spec.sources[{i}].path"), p);
                }
            }
            for (i, s) in ds.spec.sources.iter().enumerate() {
                if s.config_map.is_some() {
                    problems.push(problem(
                        m,
                        &format!("spec.sources[{i}].configMap"),
                        "ConfigMap sources need a cluster; on one machine use a path".into(),
                    ));
                }
            }
        }
        Resource::TrainingRun(tr) => {
            if let Some(p) = &tr.spec.base_model.path {
                need("spec.baseModel.path".into(), p);
            }
        }
        Resource::ModelServing(ms) => {
            if let Some(g) = &ms.spec.model.gguf {
                need("spec.model.gguf.path".into(), &g.path);
            }
        }
    }
    problems
}

fn problem(m: &Manifest, field: &str, message: String) -> Problem {
    Problem {
        origin: m.origin.clone(),
        object: Some(m.key.to_string()),
        field: field.to_string(),
        message,
    }
}

/// Indices of `manifests` in an order where every resource comes after the ones it references (input order
/// among independent ones), or every dangling reference, missing file and cycle found.
pub fn order(manifests: &[Manifest], artifacts: &Path) -> Result<Vec<usize>, Vec<Problem>> {
    let index: BTreeMap<&Key, usize> = manifests.iter().enumerate().map(|(i, m)| (&m.key, i)).collect();
    let mut problems = Vec::new();
    let mut deps: Vec<Vec<usize>> = vec![Vec::new(); manifests.len()];
    for (i, m) in manifests.iter().enumerate() {
        problems.extend(missing_files(m, artifacts));
        for r in references(m) {
            match index.get(&r.target) {
                Some(&j) => deps[i].push(j),
                None => problems.push(problem(
                    m,
                    r.field,
                    format!("{} is not among the manifests given to fireweave-ai run", r.target),
                )),
            }
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let mut done = vec![false; manifests.len()];
    let mut out = Vec::with_capacity(manifests.len());
    while out.len() < manifests.len() {
        let next = (0..manifests.len()).find(|&i| !done[i] && deps[i].iter().all(|&d| done[d]));
        match next {
            Some(i) => {
                done[i] = true;
                out.push(i);
            }
            None => {
                let start = (0..manifests.len()).find(|&i| !done[i]).unwrap_or_default();
                let cycle = find_cycle(start, &deps, &done);
                let path: Vec<String> = cycle
                    .iter()
                    .chain(cycle.first())
                    .map(|&i| format!("{} ({})", manifests[i].key, manifests[i].origin))
                    .collect();
                let first = &manifests[cycle[0]];
                return Err(vec![problem(
                    first,
                    "",
                    format!("the references form a cycle: {}", path.join(" → ")),
                )]);
            }
        }
    }
    Ok(out)
}

/// Follows unfinished dependencies from `start` until a node repeats; every node left is on or leads into a
/// cycle, so the walk always finds one.
fn find_cycle(start: usize, deps: &[Vec<usize>], done: &[bool]) -> Vec<usize> {
    let mut path = vec![start];
    loop {
        let last = *path.last().unwrap_or(&start);
        let Some(&next) = deps[last].iter().find(|&&d| !done[d]) else {
            return path;
        };
        if let Some(pos) = path.iter().position(|&p| p == next) {
            return path.split_off(pos);
        }
        path.push(next);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cycle_is_found_from_any_start() {
        // 0 → 1 → 2 → 1: starting outside the cycle still reports just the cycle.
        let deps = vec![vec![1], vec![2], vec![1]];
        assert_eq!(find_cycle(0, &deps, &[false; 3]), vec![1, 2]);
        let self_loop = vec![vec![0]];
        assert_eq!(find_cycle(0, &self_loop, &[false]), vec![0]);
    }
}
