//! The config file as serde sees it, and the checks that turn it into a
//! [`Config`]: every value is `Spanned`, so a check can still name its line
//! and key.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::diagnose::{key_segment, line_of, toml_error};
use super::{
    Config, ConfigError, Defaults, DirGrant, Grants, PutTubes, Route, Tenant, reserved_tube,
};
use crate::failures::FAILURES_TUBE;

// ---- the file as serde sees it ----
//
// Every value is `Spanned` so a check after parsing can still point at its
// line. `deny_unknown_fields` everywhere: a misspelt limit must not silently
// leave the default in place.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    defaults: Option<RawSettings>,
    #[serde(default)]
    tenants: BTreeMap<Spanned<String>, Spanned<RawTenant>>,
}

/// `[defaults]`: the keys a tenant may also set, and nothing else.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSettings {
    fuel: Option<Spanned<u64>>,
    memory_mb: Option<Spanned<u64>>,
    timeout_secs: Option<Spanned<f64>>,
    output_bytes: Option<Spanned<usize>>,
    max_attempts: Option<Spanned<u32>>,
    backoff_secs: Option<Spanned<f64>>,
    backoff_max_secs: Option<Spanned<f64>>,
    concurrency: Option<Spanned<usize>>,
    reuse: Option<Spanned<u32>>,
    max_puts: Option<Spanned<u32>>,
    max_module_mb: Option<Spanned<u64>>,
}

/// `[tenants.<name>]`. The settings repeat [`RawSettings`]: serde's
/// `flatten` would lose both the spans and `deny_unknown_fields`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTenant {
    modules: Option<Spanned<Vec<Spanned<String>>>>,
    dir: Option<Spanned<String>>,
    tubes: Option<BTreeMap<Spanned<String>, Spanned<String>>>,
    put_tubes: Option<Vec<Spanned<String>>>,
    env: Option<BTreeMap<Spanned<String>, Spanned<String>>>,
    dirs: Option<Vec<Spanned<RawDir>>>,
    fuel: Option<Spanned<u64>>,
    memory_mb: Option<Spanned<u64>>,
    timeout_secs: Option<Spanned<f64>>,
    output_bytes: Option<Spanned<usize>>,
    max_attempts: Option<Spanned<u32>>,
    backoff_secs: Option<Spanned<f64>>,
    backoff_max_secs: Option<Spanned<f64>>,
    concurrency: Option<Spanned<usize>>,
    reuse: Option<Spanned<RawReuse>>,
    max_puts: Option<Spanned<u32>>,
    max_module_mb: Option<Spanned<u64>>,
}

impl RawTenant {
    fn settings(&self) -> RawSettings {
        RawSettings {
            fuel: self.fuel.clone(),
            memory_mb: self.memory_mb.clone(),
            timeout_secs: self.timeout_secs.clone(),
            output_bytes: self.output_bytes.clone(),
            max_attempts: self.max_attempts.clone(),
            backoff_secs: self.backoff_secs.clone(),
            backoff_max_secs: self.backoff_max_secs.clone(),
            concurrency: self.concurrency.clone(),
            reuse: self.reuse.as_ref().and_then(|reuse| match reuse.get_ref() {
                RawReuse::All(n) => Some(Spanned::new(reuse.span(), *n)),
                RawReuse::PerModule(_) => None,
            }),
            max_puts: self.max_puts.clone(),
            max_module_mb: self.max_module_mb.clone(),
        }
    }
}

/// A tenant's `reuse`: one value for all its modules, or a table of module
/// = value. Deserialized by hand: an untagged enum would buffer the value and
/// lose the spans inside the table.
enum RawReuse {
    All(u32),
    PerModule(BTreeMap<Spanned<String>, Spanned<u32>>),
}

impl<'de> Deserialize<'de> for RawReuse {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;

        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = RawReuse;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a positive integer or a table of module = integer")
            }

            fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<RawReuse, E> {
                u32::try_from(n)
                    .map(RawReuse::All)
                    .map_err(|_| E::invalid_value(serde::de::Unexpected::Signed(n), &self))
            }

            fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<RawReuse, E> {
                u32::try_from(n)
                    .map(RawReuse::All)
                    .map_err(|_| E::invalid_value(serde::de::Unexpected::Unsigned(n), &self))
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<RawReuse, A::Error> {
                let map = serde::de::value::MapAccessDeserializer::new(map);
                BTreeMap::deserialize(map).map(RawReuse::PerModule)
            }
        }

        deserializer.deserialize_any(Visitor)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDir {
    host: Spanned<String>,
    guest: Spanned<String>,
    mode: Option<Spanned<String>>,
}

// ---- checking ----

/// The text being checked, to turn spans into lines.
struct Source<'a> {
    text: &'a str,
    file: &'a str,
}

impl Source<'_> {
    fn error(&self, span: Range<usize>, key: String, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.file.to_string(),
            line: Some(line_of(self.text, span.start)),
            key: Some(key),
            message: message.into(),
        }
    }

    /// An error at a spanned value.
    fn at<T>(&self, value: &Spanned<T>, key: String, message: impl Into<String>) -> ConfigError {
        self.error(value.span(), key, message)
    }
}

pub(super) fn parse_in(
    text: &str,
    file: &str,
    base: &Path,
    defaults: &Defaults,
) -> Result<Config, ConfigError> {
    let src = Source { text, file };
    let raw: RawFile = toml::from_str(text).map_err(|e| toml_error(text, file, &e))?;
    let base_settings = overlay(
        &src,
        defaults,
        &raw.defaults.unwrap_or_default(),
        "defaults",
    )?;

    // Checked in file order, so "already served by" names the earlier one.
    let mut raw_tenants: Vec<_> = raw.tenants.into_iter().collect();
    raw_tenants.sort_by_key(|(name, _)| name.span().start);

    let mut module_owner: HashMap<String, String> = HashMap::new();
    let mut tube_owner: HashMap<String, (String, String)> = HashMap::new();
    let mut tenants = Vec::with_capacity(raw_tenants.len());
    for (name, raw) in raw_tenants {
        let tenant = check_tenant(
            &src,
            base,
            &base_settings,
            &name,
            raw.get_ref(),
            &mut module_owner,
            &mut tube_owner,
        )?;
        tenants.push(tenant);
    }
    tenants.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Config { tenants })
}

/// `base` with the settings `raw` gives applied; `prefix` is their table.
fn overlay(
    src: &Source<'_>,
    base: &Defaults,
    raw: &RawSettings,
    prefix: &str,
) -> Result<Defaults, ConfigError> {
    let key = |name: &str| format!("{prefix}.{name}");
    let mut out = *base;
    if let Some(fuel) = &raw.fuel {
        out.limits.fuel = *fuel.get_ref();
    }
    if let Some(mb) = &raw.memory_mb {
        let bytes = match *mb.get_ref() {
            0 => return Err(src.at(mb, key("memory_mb"), "must be at least 1")),
            n => n
                .checked_mul(1 << 20)
                .ok_or_else(|| src.at(mb, key("memory_mb"), format!("{n} MiB is too large")))?,
        };
        out.limits.memory_bytes = bytes;
    }
    if let Some(secs) = &raw.timeout_secs {
        out.limits.timeout = Duration::try_from_secs_f64(*secs.get_ref())
            .ok()
            .filter(|t| !t.is_zero())
            .ok_or_else(|| {
                src.at(
                    secs,
                    key("timeout_secs"),
                    format!(
                        "must be a positive number of seconds, got {}",
                        secs.get_ref()
                    ),
                )
            })?;
    }
    if let Some(bytes) = &raw.output_bytes {
        out.limits.output_bytes = *bytes.get_ref();
    }
    if let Some(n) = &raw.max_attempts {
        if *n.get_ref() == 0 {
            return Err(src.at(n, key("max_attempts"), "must be at least 1"));
        }
        out.max_attempts = *n.get_ref();
    }
    for (raw, slot, name) in [
        (&raw.backoff_secs, &mut out.backoff, "backoff_secs"),
        (
            &raw.backoff_max_secs,
            &mut out.backoff_max,
            "backoff_max_secs",
        ),
    ] {
        if let Some(secs) = raw {
            *slot = Duration::try_from_secs_f64(*secs.get_ref()).map_err(|_| {
                src.at(
                    secs,
                    key(name),
                    format!(
                        "must be a non-negative number of seconds, got {}",
                        secs.get_ref()
                    ),
                )
            })?;
        }
    }
    if let Some(n) = &raw.concurrency {
        if *n.get_ref() == 0 {
            return Err(src.at(n, key("concurrency"), "must be at least 1"));
        }
        out.concurrency = *n.get_ref();
    }
    if let Some(n) = &raw.reuse {
        if *n.get_ref() == 0 {
            return Err(src.at(n, key("reuse"), "must be at least 1"));
        }
        out.reuse = *n.get_ref();
    }
    if let Some(n) = &raw.max_puts {
        // 0 is allowed: a tenant whose tasks may not put at all.
        out.limits.max_puts = *n.get_ref();
    }
    if let Some(mb) = &raw.max_module_mb {
        out.max_module_bytes = match *mb.get_ref() {
            0 => return Err(src.at(mb, key("max_module_mb"), "must be at least 1")),
            n => n
                .checked_mul(1 << 20)
                .ok_or_else(|| src.at(mb, key("max_module_mb"), format!("{n} MiB is too large")))?,
        };
    }
    Ok(out)
}

fn check_tenant(
    src: &Source<'_>,
    base: &Path,
    defaults: &Defaults,
    name: &Spanned<String>,
    raw: &RawTenant,
    module_owner: &mut HashMap<String, String>,
    tube_owner: &mut HashMap<String, (String, String)>,
) -> Result<Tenant, ConfigError> {
    let tenant = name.get_ref();
    let prefix = format!("tenants.{}", key_segment(tenant));
    let key = |rest: &str| format!("{prefix}.{rest}");
    if tenant.is_empty() {
        return Err(src.at(name, prefix, "a tenant needs a non-empty name"));
    }
    let settings = overlay(src, defaults, &raw.settings(), &prefix)?;

    // Modules, each serving the tube of its own name.
    let modules = match &raw.modules {
        Some(list) if !list.get_ref().is_empty() => list.get_ref(),
        Some(list) => {
            return Err(src.at(list, key("modules"), "a tenant needs at least one module"));
        }
        None => {
            return Err(src.at(
                name,
                key("modules"),
                "missing: a tenant needs at least one module",
            ));
        }
    };
    let mut routes = Vec::new();
    let mut serve = |tube: &Spanned<String>, module: &str, tube_key: String| {
        if tube.get_ref() == FAILURES_TUBE {
            return Err(src.at(tube, tube_key, reserved_tube()));
        }
        if let Some((owner, by)) = tube_owner.get(tube.get_ref()) {
            let whose = if owner == tenant {
                "this tenant".to_string()
            } else {
                format!("tenant `{owner}`")
            };
            return Err(src.at(
                tube,
                tube_key,
                format!(
                    "tube `{}` is already served by module `{by}` of {whose}",
                    tube.get_ref()
                ),
            ));
        }
        tube_owner.insert(tube.get_ref().clone(), (tenant.clone(), module.to_string()));
        routes.push(Route {
            tube: tube.get_ref().clone(),
            module: module.to_string(),
        });
        Ok(())
    };
    for (i, module) in modules.iter().enumerate() {
        let module_key = key(&format!("modules[{i}]"));
        check_module_name(module.get_ref()).map_err(|m| src.at(module, module_key.clone(), m))?;
        match module_owner.get(module.get_ref()) {
            Some(owner) if owner == tenant => {
                return Err(src.at(
                    module,
                    module_key,
                    format!("module `{}` is listed twice", module.get_ref()),
                ));
            }
            Some(owner) => {
                return Err(src.at(
                    module,
                    module_key,
                    format!(
                        "module `{}` already belongs to tenant `{owner}`",
                        module.get_ref()
                    ),
                ));
            }
            None => {}
        }
        module_owner.insert(module.get_ref().clone(), tenant.clone());
        serve(module, module.get_ref(), module_key)?;
    }

    // More tubes for its modules.
    for (tube, module) in raw.tubes.iter().flatten() {
        let tube_key = key(&format!("tubes.{}", key_segment(tube.get_ref())));
        beanbox_queue::beanstalk::proto::validate_tube(tube.get_ref())
            .map_err(|_| src.at(tube, tube_key.clone(), bad_tube(tube.get_ref())))?;
        if !modules.iter().any(|m| m.get_ref() == module.get_ref()) {
            return Err(src.at(
                module,
                tube_key,
                format!(
                    "module `{}` is not one of this tenant's `modules`",
                    module.get_ref()
                ),
            ));
        }
        serve(tube, module.get_ref(), tube_key)?;
    }
    routes.sort_by(|a, b| a.tube.cmp(&b.tube));

    let put_tubes = match &raw.put_tubes {
        None => PutTubes::Only(routes.iter().map(|r| r.tube.clone()).collect()),
        Some(list) => {
            let mut only = Vec::new();
            let mut any = false;
            for (i, tube) in list.iter().enumerate() {
                if tube.get_ref() == "*" {
                    any = true;
                    continue;
                }
                beanbox_queue::beanstalk::proto::validate_tube(tube.get_ref()).map_err(|_| {
                    src.at(
                        tube,
                        key(&format!("put_tubes[{i}]")),
                        bad_tube(tube.get_ref()),
                    )
                })?;
                if tube.get_ref() == FAILURES_TUBE {
                    return Err(src.at(tube, key(&format!("put_tubes[{i}]")), reserved_tube()));
                }
                if !only.contains(tube.get_ref()) {
                    only.push(tube.get_ref().clone());
                }
            }
            if any {
                PutTubes::Any
            } else {
                PutTubes::Only(only)
            }
        }
    };

    let grants = Grants {
        env: check_env(src, &prefix, raw.env.as_ref())?,
        dirs: check_dirs(src, &prefix, base, raw.dirs.as_deref())?,
    };
    let reuse = check_reuse(src, &prefix, modules, settings.reuse, raw.reuse.as_ref())?;
    let modules_dir = match &raw.dir {
        None => None,
        Some(dir) => Some(host_dir(base, dir.get_ref()).map_err(|m| src.at(dir, key("dir"), m))?),
    };

    Ok(Tenant {
        name: tenant.clone(),
        routes,
        limits: settings.limits,
        concurrency: settings.concurrency,
        max_attempts: settings.max_attempts,
        backoff: settings.backoff,
        backoff_max: settings.backoff_max,
        grants,
        put_tubes,
        reuse,
        max_module_bytes: settings.max_module_bytes,
        modules_dir,
    })
}

/// `reuse` of every module: the table's value for the modules it names, the
/// tenant's (already in `inherited`) for the rest.
fn check_reuse(
    src: &Source<'_>,
    prefix: &str,
    modules: &[Spanned<String>],
    inherited: u32,
    raw: Option<&Spanned<RawReuse>>,
) -> Result<BTreeMap<String, u32>, ConfigError> {
    let mut reuse: BTreeMap<String, u32> = modules
        .iter()
        .map(|m| (m.get_ref().clone(), inherited))
        .collect();
    if let Some(RawReuse::PerModule(table)) = raw.map(Spanned::get_ref) {
        for (module, n) in table {
            let name = module.get_ref();
            let module_key = format!("{prefix}.reuse.{}", key_segment(name));
            let Some(slot) = reuse.get_mut(name) else {
                return Err(src.at(
                    module,
                    module_key,
                    format!("module `{name}` is not one of this tenant's `modules`"),
                ));
            };
            if *n.get_ref() == 0 {
                return Err(src.at(n, module_key, "must be at least 1"));
            }
            *slot = *n.get_ref();
        }
    }
    Ok(reuse)
}

/// `env`: names a process could have, values without NUL.
fn check_env(
    src: &Source<'_>,
    prefix: &str,
    raw: Option<&BTreeMap<Spanned<String>, Spanned<String>>>,
) -> Result<Vec<(String, String)>, ConfigError> {
    let key = |rest: &str| format!("{prefix}.{rest}");
    let mut env = Vec::new();
    for (var, value) in raw.into_iter().flatten() {
        let var_key = key(&format!("env.{}", key_segment(var.get_ref())));
        let var_name = var.get_ref();
        if var_name.is_empty() || var_name.contains(['=', '\0']) {
            return Err(src.at(
                var,
                var_key,
                format!(
                    "`{var_name}` cannot be an environment variable name: \
                     it must be non-empty, without `=` or NUL"
                ),
            ));
        }
        if value.get_ref().contains('\0') {
            return Err(src.at(value, var_key, "an environment variable cannot hold NUL"));
        }
        env.push((var_name.clone(), value.get_ref().clone()));
    }
    Ok(env)
}

/// `dirs`: existing host directories at absolute guest paths, each once.
fn check_dirs(
    src: &Source<'_>,
    prefix: &str,
    base: &Path,
    raw: Option<&[Spanned<RawDir>]>,
) -> Result<Vec<DirGrant>, ConfigError> {
    let key = |rest: &str| format!("{prefix}.{rest}");
    let mut dirs: Vec<DirGrant> = Vec::new();
    for (i, dir) in raw.into_iter().flatten().enumerate() {
        let dir_key = |field: &str| key(&format!("dirs[{i}].{field}"));
        let dir = dir.get_ref();
        let writable = match dir.mode.as_ref().map(|m| (m, m.get_ref().as_str())) {
            None | Some((_, "ro")) => false,
            Some((_, "rw")) => true,
            Some((mode, other)) => {
                return Err(src.at(
                    mode,
                    dir_key("mode"),
                    format!("expected `ro` or `rw`, got `{other}`"),
                ));
            }
        };
        let guest = dir.guest.get_ref();
        if !guest.starts_with('/') {
            return Err(src.at(
                &dir.guest,
                dir_key("guest"),
                format!("guest path `{guest}` must be absolute"),
            ));
        }
        if dirs.iter().any(|d| d.guest == *guest) {
            return Err(src.at(
                &dir.guest,
                dir_key("guest"),
                format!("guest path `{guest}` is granted twice"),
            ));
        }
        let host = host_dir(base, dir.host.get_ref())
            .map_err(|m| src.at(&dir.host, dir_key("host"), m))?;
        dirs.push(DirGrant {
            host,
            guest: guest.clone(),
            writable,
        });
    }
    Ok(dirs)
}

/// A module name is a file stem in the modules directory, and the name of
/// the tube it serves.
fn check_module_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\\', '\0']) {
        return Err(format!(
            "`{name}` cannot be a module name: \
             expected a file stem in the modules directory, like `resize` for resize.wasm"
        ));
    }
    if let Some(stem) = name.strip_suffix(".wasm") {
        return Err(format!(
            "`{name}` cannot be a module name: write the file stem, `{stem}`"
        ));
    }
    beanbox_queue::beanstalk::proto::validate_tube(name).map_err(|_| {
        format!(
            "`{name}` cannot be a module name: it also names its tube, and {}",
            bad_tube_rule()
        )
    })
}

fn bad_tube(tube: &str) -> String {
    let shown: String = tube.chars().take(64).collect();
    format!("`{shown}` cannot be a tube: {}", bad_tube_rule())
}

fn bad_tube_rule() -> &'static str {
    "a tube name is 1-200 bytes of letters, digits and `-+/;.$_()`, not starting with `-`"
}

/// The granted directory: relative to the config file's directory, made
/// absolute, and a directory now.
fn host_dir(base: &Path, host: &str) -> Result<PathBuf, String> {
    let joined = base.join(host);
    let path = std::path::absolute(&joined).unwrap_or(joined);
    match std::fs::metadata(&path) {
        Ok(meta) if meta.is_dir() => Ok(path),
        Ok(_) => Err(format!("{} is not a directory", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(format!("{} does not exist", path.display()))
        }
        Err(e) => Err(format!("cannot use {}: {e}", path.display())),
    }
}
