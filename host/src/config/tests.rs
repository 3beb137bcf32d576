//! The config's unit tests: a full file read back value by value, then
//! every check and every error's file, line and key. Over 600 lines because
//! each rejected input is its own small test.

use super::*;

const FILE: &str = "/etc/beanbox/tenants.toml";
const MANIFEST_DIR: &str = env!("CARGO_MANIFEST_DIR");

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, FILE, &Defaults::default())
}

/// Asserts the error names the file, the line and the key, and says
/// `words`.
#[track_caller]
fn assert_error(text: &str, line: usize, key: &str, words: &str) {
    let error = parse(text).expect_err("the config should be rejected");
    let shown = error.to_string();
    assert!(
        shown.starts_with(&format!("{FILE}:{line}: key `{key}`: ")),
        "{shown}"
    );
    assert!(shown.contains(words), "{shown:?} should say {words:?}");
    assert!(!shown.contains('\n'), "{shown:?} should be one line");
    assert_eq!(error.file, FILE);
    assert_eq!(error.line, Some(line));
    assert_eq!(error.key.as_deref(), Some(key));
}

fn full_file() -> String {
    format!(
        r#"
[defaults]
fuel = 5_000
memory_mb = 32
timeout_secs = 2.5
output_bytes = 4096
max_attempts = 4
backoff_secs = 0.5
backoff_max_secs = 90
concurrency = 3
reuse = 2
max_puts = 7
max_module_mb = 16

[tenants.acme]
modules = ["resize", "thumbs"]
tubes = {{ images = "resize", "pics.v2" = "resize" }}
concurrency = 2
reuse = {{ thumbs = 50 }}
memory_mb = 128
fuel = 20_000_000_000
timeout_secs = 10
output_bytes = 65536
max_attempts = 5
backoff_secs = 2
backoff_max_secs = 60
max_puts = 0
max_module_mb = 100
put_tubes = ["results", "images"]
env = {{ API_URL = "https://api.example", MODE = "fast" }}
dirs = [
{{ host = '{MANIFEST_DIR}', guest = "/in", mode = "ro" }},
{{ host = '{MANIFEST_DIR}/src', guest = "/out", mode = "rw" }},
{{ host = '{MANIFEST_DIR}', guest = "/plain" }},
]

[tenants.globex]
modules = ["report"]

[tenants.anything]
modules = ["relay"]
put_tubes = ["*"]
"#
    )
}

fn route(tube: &str, module: &str) -> Route {
    Route {
        tube: tube.into(),
        module: module.into(),
    }
}

#[test]
fn full_file_puts_every_field_in_its_place() {
    let config = parse(&full_file()).unwrap();
    let names: Vec<&str> = config.tenants.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["acme", "anything", "globex"], "sorted by name");

    let acme = &config.tenants[0];
    assert_eq!(
        acme.routes,
        [
            route("images", "resize"),
            route("pics.v2", "resize"),
            route("resize", "resize"),
            route("thumbs", "thumbs"),
        ]
    );
    assert_eq!(acme.modules(), ["resize", "thumbs"]);
    assert_eq!(
        acme.limits,
        Limits {
            fuel: 20_000_000_000,
            memory_bytes: 128 << 20,
            timeout: Duration::from_secs(10),
            output_bytes: 65536,
            max_puts: 0,
            ..Limits::default()
        }
    );
    assert_eq!(acme.concurrency, 2);
    assert_eq!(acme.max_attempts, 5);
    assert_eq!(acme.backoff, Duration::from_secs(2));
    assert_eq!(acme.backoff_max, Duration::from_secs(60));
    assert_eq!(
        acme.put_tubes,
        PutTubes::Only(vec!["results".into(), "images".into()])
    );
    assert_eq!(
        acme.reuse,
        BTreeMap::from([("resize".into(), 2), ("thumbs".into(), 50)])
    );
    assert_eq!(acme.max_module_bytes, 100 << 20);
    assert_eq!(
        acme.grants.env,
        [
            ("API_URL".to_string(), "https://api.example".to_string()),
            ("MODE".to_string(), "fast".to_string()),
        ]
    );
    assert_eq!(
        acme.grants.dirs,
        [
            DirGrant {
                host: MANIFEST_DIR.into(),
                guest: "/in".into(),
                writable: false,
            },
            DirGrant {
                host: Path::new(MANIFEST_DIR).join("src"),
                guest: "/out".into(),
                writable: true,
            },
            DirGrant {
                host: MANIFEST_DIR.into(),
                guest: "/plain".into(),
                writable: false,
            },
        ]
    );

    // Everything it does not set comes from `[defaults]`.
    let globex = &config.tenants[2];
    assert_eq!(globex.routes, [route("report", "report")]);
    assert_eq!(
        globex.limits,
        Limits {
            fuel: 5_000,
            memory_bytes: 32 << 20,
            timeout: Duration::from_millis(2500),
            output_bytes: 4096,
            max_puts: 7,
            ..Limits::default()
        }
    );
    assert_eq!(globex.concurrency, 3);
    assert_eq!(globex.max_attempts, 4);
    assert_eq!(globex.backoff, Duration::from_millis(500));
    assert_eq!(globex.backoff_max, Duration::from_secs(90));
    assert_eq!(globex.max_module_bytes, 16 << 20);
    assert_eq!(globex.modules_dir, None);
    assert_eq!(globex.grants, Grants::default());
    assert_eq!(globex.put_tubes, PutTubes::Only(vec!["report".into()]));
    assert!(!globex.put_tubes.allows("resize"));
    assert_eq!(globex.reuse, BTreeMap::from([("report".into(), 2)]));

    assert_eq!(config.tenants[1].put_tubes, PutTubes::Any);
    assert!(config.tenants[1].put_tubes.allows("whatever"));
}

#[test]
fn routes_tubes_and_modules_to_their_tenant() {
    let config = parse(&full_file()).unwrap();
    let (tenant, module) = route_of(&config, "images").unwrap();
    assert_eq!((tenant.name.as_str(), module), ("acme", "resize"));
    let (tenant, module) = route_of(&config, "report").unwrap();
    assert_eq!((tenant.name.as_str(), module), ("globex", "report"));
    assert!(route_of(&config, "nobody").is_none());
    assert_eq!(tenant_of_module(&config, "thumbs").unwrap().name, "acme");
    assert!(
        tenant_of_module(&config, "images").is_none(),
        "a tube, not a module"
    );
}

#[test]
fn without_a_section_settings_come_from_the_flags() {
    let flags = Defaults {
        limits: Limits {
            fuel: 7,
            ..Limits::default()
        },
        concurrency: 9,
        max_attempts: 2,
        backoff: Duration::from_secs(4),
        backoff_max: Duration::from_secs(8),
        reuse: 5,
        max_module_bytes: 3 << 20,
    };
    let config = Config::parse(
        "[tenants.a]\nmodules = [\"a\"]\nmax_attempts = 6\n",
        FILE,
        &flags,
    )
    .unwrap();
    let a = &config.tenants[0];
    assert_eq!(a.limits, flags.limits);
    assert_eq!(a.concurrency, 9);
    assert_eq!(a.max_attempts, 6);
    assert_eq!(
        (a.backoff, a.backoff_max),
        (flags.backoff, flags.backoff_max)
    );
    assert_eq!(a.jobs_per_instance("a"), 5);
    assert_eq!(a.max_module_bytes, 3 << 20);
}

#[test]
fn a_tenant_dir_holds_its_modules_relative_to_the_file() {
    let file = format!("{MANIFEST_DIR}/tenants.toml");
    let text = "[tenants.a]\nmodules = [\"x\", \"y\"]\ndir = \"src\"\n\
                [tenants.b]\nmodules = [\"z\"]\n";
    let config = Config::parse(text, &file, &Defaults::default()).unwrap();
    let src = Path::new(MANIFEST_DIR).join("src");
    assert_eq!(
        config.tenants[0].modules_dir.as_deref(),
        Some(src.as_path())
    );
    assert_eq!(
        config.module_dirs(),
        HashMap::from([("x".into(), src.clone()), ("y".into(), src)])
    );
    assert_error(
        "[tenants.a]\nmodules = [\"x\"]\ndir = \"/nonexistent/beanbox\"\n",
        3,
        "tenants.a.dir",
        "/nonexistent/beanbox does not exist",
    );
    assert_error(
        "[defaults]\ndir = \"/tmp\"\n",
        2,
        "defaults.dir",
        "unknown key `dir`",
    );
}

#[test]
fn max_module_mb_resolves_as_flag_then_defaults_then_tenant() {
    let flags = Defaults {
        max_module_bytes: 3 << 20,
        ..Defaults::default()
    };
    let tenants = "[tenants.a]\nmodules = [\"x\", \"y\"]\nmax_module_mb = 8\n\
                   [tenants.b]\nmodules = [\"z\"]\n";
    let config = Config::parse(tenants, FILE, &flags).unwrap();
    assert_eq!(config.tenants[0].max_module_bytes, 8 << 20);
    assert_eq!(config.tenants[1].max_module_bytes, 3 << 20, "from the flag");
    let config = Config::parse(
        &format!("[defaults]\nmax_module_mb = 6\n{tenants}"),
        FILE,
        &flags,
    )
    .unwrap();
    assert_eq!(config.tenants[1].max_module_bytes, 6 << 20);
    assert_eq!(
        config.module_size_limits(),
        HashMap::from([
            ("x".into(), 8 << 20),
            ("y".into(), 8 << 20),
            ("z".into(), 6 << 20)
        ])
    );
    let implicit = Config::implicit(&["x".into()], &flags);
    assert_eq!(implicit.tenants[0].max_module_bytes, 3 << 20);
}

#[test]
fn reuse_is_a_fresh_instance_per_job_unless_set() {
    let config = parse("[tenants.a]\nmodules = [\"x\", \"y\"]\n").unwrap();
    let a = &config.tenants[0];
    assert_eq!(a.reuse, BTreeMap::from([("x".into(), 1), ("y".into(), 1)]));
    assert_eq!(a.jobs_per_instance("x"), 1);
    assert_eq!(a.jobs_per_instance("elsewhere"), 1, "an unknown module");
}

#[test]
fn reuse_as_an_integer_sets_every_module_of_the_tenant() {
    let config = parse("[tenants.a]\nmodules = [\"x\", \"y\"]\nreuse = 10\n").unwrap();
    let a = &config.tenants[0];
    assert_eq!(
        a.reuse,
        BTreeMap::from([("x".into(), 10), ("y".into(), 10)])
    );
    assert_eq!(a.jobs_per_instance("y"), 10);
}

#[test]
fn reuse_as_a_table_sets_the_modules_it_names_and_others_inherit() {
    let flags = Defaults {
        reuse: 3,
        ..Defaults::default()
    };
    let text = "[tenants.a]\nmodules = [\"x\", \"y\", \"hello.py\"]\n\
                reuse = { \"hello.py\" = 50, x = 7 }\n";
    let a = Config::parse(text, FILE, &flags).unwrap().tenants.remove(0);
    assert_eq!(a.jobs_per_instance("hello.py"), 50);
    assert_eq!(a.jobs_per_instance("x"), 7);
    assert_eq!(a.jobs_per_instance("y"), 3, "from the flag");

    let text = format!("[defaults]\nreuse = 4\n{text}");
    let a = Config::parse(&text, FILE, &flags)
        .unwrap()
        .tenants
        .remove(0);
    assert_eq!(a.jobs_per_instance("hello.py"), 50);
    assert_eq!(
        a.jobs_per_instance("y"),
        4,
        "from [defaults], over the flag"
    );
}

#[test]
fn reuse_resolves_as_flag_then_defaults_then_tenant() {
    let flags = Defaults {
        reuse: 3,
        ..Defaults::default()
    };
    let tenants = "[tenants.a]\nmodules = [\"x\"]\nreuse = 8\n[tenants.b]\nmodules = [\"y\"]\n";
    let config = Config::parse(tenants, FILE, &flags).unwrap();
    assert_eq!(config.tenants[0].jobs_per_instance("x"), 8);
    assert_eq!(config.tenants[1].jobs_per_instance("y"), 3);

    let config = Config::parse(&format!("[defaults]\nreuse = 6\n{tenants}"), FILE, &flags).unwrap();
    assert_eq!(config.tenants[0].jobs_per_instance("x"), 8);
    assert_eq!(config.tenants[1].jobs_per_instance("y"), 6);
}

#[test]
fn an_empty_file_has_no_tenants() {
    assert_eq!(parse("").unwrap().tenants, []);
}

#[test]
fn implicit_config_makes_every_module_its_own_tenant() {
    let defaults = Defaults {
        concurrency: 2,
        reuse: 20,
        ..Defaults::default()
    };
    let modules = ["thumbs".to_string(), "hello".into(), "thumbs".into()];
    let config = Config::implicit(&modules, &defaults);
    assert_eq!(config.tenants.len(), 2);
    let hello = &config.tenants[0];
    assert_eq!(hello.name, "hello");
    assert_eq!(hello.routes, [route("hello", "hello")]);
    assert_eq!(hello.limits, defaults.limits);
    assert_eq!(hello.concurrency, 2);
    assert_eq!(hello.max_attempts, defaults.max_attempts);
    assert_eq!(hello.grants, Grants::default());
    assert_eq!(hello.put_tubes, PutTubes::Only(vec!["hello".into()]));
    assert_eq!(hello.reuse, BTreeMap::from([("hello".into(), 20)]));
    assert_eq!(hello.jobs_per_instance("hello"), 20);
    assert_eq!(route_of(&config, "thumbs").unwrap().1, "thumbs");
    assert_eq!(tenant_of_module(&config, "thumbs").unwrap().name, "thumbs");
}

#[test]
fn relative_dirs_are_relative_to_the_file() {
    let file = format!("{MANIFEST_DIR}/tenants.toml");
    let text = "[tenants.a]\nmodules = [\"a\"]\ndirs = [{ host = \"src\", guest = \"/src\" }]\n";
    let config = Config::parse(text, &file, &Defaults::default()).unwrap();
    assert_eq!(
        config.tenants[0].grants.dirs[0].host,
        Path::new(MANIFEST_DIR).join("src")
    );
}

#[test]
fn example_file_is_valid() {
    let path = Path::new(MANIFEST_DIR).join("../examples/tenants.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    // Its directories are examples; point them at ones that exist here.
    let text = text
        .replace("/srv/acme/in", MANIFEST_DIR)
        .replace("/srv/acme/out", &format!("{MANIFEST_DIR}/src"));
    let config = Config::parse(&text, "tenants.toml", &Defaults::default()).unwrap();
    assert!(config.tenants.len() >= 2);
    assert!(route_of(&config, "images").is_some());
}

#[test]
fn load_reads_the_file_and_names_it_in_errors() {
    let path = std::env::temp_dir().join(format!("beanbox-config-{}.toml", std::process::id()));
    std::fs::write(&path, "[tenants.a]\nmodules = [\"a\"]\nfuel = \"lots\"\n").unwrap();
    let error = Config::load(&path, &Defaults::default()).unwrap_err();
    std::fs::write(&path, "[tenants.a]\nmodules = [\"a\"]\n").unwrap();
    let loaded = Config::load(&path, &Defaults::default());
    std::fs::remove_file(&path).unwrap();
    assert_eq!(
        error.to_string(),
        format!(
            "{}:3: key `tenants.a.fuel`: expected a non-negative integer, got string \"lots\"",
            path.display()
        )
    );
    assert_eq!(loaded.unwrap().tenants[0].name, "a");

    let missing = Path::new("/nonexistent/beanbox/tenants.toml");
    let error = Config::load(missing, &Defaults::default()).unwrap_err();
    assert_eq!((error.line, error.key.as_deref()), (None, None));
    assert!(
        error
            .to_string()
            .starts_with("/nonexistent/beanbox/tenants.toml: cannot read the config file: "),
        "{error}"
    );
}

// ---- every rejection names file, line and key ----

#[test]
fn rejects_unknown_keys() {
    assert_error(
        "[tenants.acme]\nmodules = [\"a\"]\nfuell = 3\n",
        3,
        "tenants.acme.fuell",
        "unknown key `fuell`, expected one of",
    );
    assert_error(
        "[defaults]\nfuel = 3\nmodules = [\"a\"]\n",
        3,
        "defaults.modules",
        "unknown key `modules`",
    );
    assert_error("tenant = 1\n", 1, "tenant", "unknown key `tenant`");
    assert_error(
        "[tenants.acme]\nmodules = [\"a\"]\ndirs = [\n  { host = \"/\", guest = \"/x\", mod = \"ro\" },\n]\n",
        4,
        "tenants.acme.dirs[0].mod",
        "unknown key `mod`",
    );
}

#[test]
fn rejects_wrong_types() {
    assert_error(
        "[tenants.acme]\nmodules = [\"a\"]\n\nfuel = \"lots\"\n",
        4,
        "tenants.acme.fuel",
        "expected a non-negative integer, got string \"lots\"",
    );
    assert_error(
        "[tenants.acme]\nmodules = \"a\"\n",
        2,
        "tenants.acme.modules",
        "expected an array",
    );
    assert_error(
        "[tenants.acme]\nmodules = [\"a\"]\nmax_puts = \"many\"\n",
        3,
        "tenants.acme.max_puts",
        "expected a non-negative 32-bit integer, got string \"many\"",
    );
    assert_error(
        "[tenants.acme]\nmodules = [\"a\"]\nmax_attempts = -1\n",
        3,
        "tenants.acme.max_attempts",
        "expected a non-negative 32-bit integer, got integer `-1`",
    );
    assert_error(
        "[defaults]\ntimeout_secs = \"30s\"\n",
        2,
        "defaults.timeout_secs",
        "expected a number",
    );
    assert_error(
        "[tenants]\nacme = 3\n",
        2,
        "tenants.acme",
        "expected a table",
    );
    assert_error(
        "[tenants.acme]\nmodules = [\"a\"]\nreuse = \"lots\"\n",
        3,
        "tenants.acme.reuse",
        "expected a positive integer or a table of module = integer, got string \"lots\"",
    );
    assert_error(
        "[tenants.acme]\nmodules = [\"a\"]\nreuse = -1\n",
        3,
        "tenants.acme.reuse",
        "expected a positive integer or a table of module = integer, got integer `-1`",
    );
    assert_error(
        "[tenants.acme]\nmodules = [\"a\"]\nreuse = 1.5\n",
        3,
        "tenants.acme.reuse",
        "expected a positive integer or a table of module = integer, got floating point",
    );
    assert_error(
        "[tenants.acme]\nmodules = [\"a\", \"b\"]\n[tenants.acme.reuse]\na = 2\nb = \"many\"\n",
        5,
        "tenants.acme.reuse.b",
        "expected a non-negative 32-bit integer, got string \"many\"",
    );
    assert_error(
        "[defaults]\nreuse = { a = 2 }\n",
        2,
        "defaults.reuse",
        "expected a non-negative 32-bit integer",
    );
    assert_error(
        "[tenants.acme]\nmodules = [\"a\"]\ndirs = [{ host = \"/\" }]\n",
        3,
        "tenants.acme.dirs[0]",
        "missing key `guest`",
    );
}

#[test]
fn rejects_bad_toml_with_the_line_and_key() {
    assert_error(
        "[tenants.acme]\nmodules = [\"a\"]\nfuel = \n",
        3,
        "tenants.acme.fuel",
        "",
    );
    assert_error(
        "[tenants.acme]\nmodules = [\"a\"]\nfuel = 1\nfuel = 2\n",
        4,
        "tenants.acme.fuel",
        "duplicate key",
    );
}

#[test]
fn rejects_a_module_in_two_tenants() {
    assert_error(
        "[tenants.b]\nmodules = [\"resize\"]\n\n[tenants.a]\nmodules = [\"x\", \"resize\"]\n",
        5,
        "tenants.a.modules[1]",
        "module `resize` already belongs to tenant `b`",
    );
    assert_error(
        "[tenants.a]\nmodules = [\"resize\",\n  \"resize\"]\n",
        3,
        "tenants.a.modules[1]",
        "listed twice",
    );
}

#[test]
fn rejects_a_tube_served_twice() {
    // Across tenants: a's extra tube is b's module.
    assert_error(
        "[tenants.b]\nmodules = [\"report\"]\n[tenants.a]\nmodules = [\"x\"]\ntubes = { report = \"x\" }\n",
        5,
        "tenants.a.tubes.report",
        "tube `report` is already served by module `report` of tenant `b`",
    );
    // Within a tenant: an extra tube named like one of its modules.
    assert_error(
        "[tenants.a]\nmodules = [\"x\", \"y\"]\n[tenants.a.tubes]\ny = \"x\"\n",
        4,
        "tenants.a.tubes.y",
        "tube `y` is already served by module `y` of this tenant",
    );
}

#[test]
fn rejects_the_failure_records_tube() {
    let words = "`beanbox.failures` is beanbox's own tube";
    assert_error(
        "[tenants.a]\nmodules = [\"x\"]\ntubes = { \"beanbox.failures\" = \"x\" }\n",
        3,
        "tenants.a.tubes.\"beanbox.failures\"",
        words,
    );
    assert_error(
        "[tenants.a]\nmodules = [\"beanbox.failures\"]\n",
        2,
        "tenants.a.modules[0]",
        words,
    );
    assert_error(
        "[tenants.a]\nmodules = [\"x\"]\nput_tubes = [\"beanbox.failures\"]\n",
        3,
        "tenants.a.put_tubes[0]",
        words,
    );
    // Not even with `*`.
    assert!(!PutTubes::Any.allows(FAILURES_TUBE));
    assert!(PutTubes::Any.allows("results"));
}

#[test]
fn rejects_a_tube_for_a_module_the_tenant_does_not_list() {
    assert_error(
        "[tenants.a]\nmodules = [\"x\"]\ntubes = { images = \"resize\" }\n",
        3,
        "tenants.a.tubes.images",
        "module `resize` is not one of this tenant's `modules`",
    );
}

#[test]
fn rejects_reuse_for_a_module_the_tenant_does_not_list() {
    assert_error(
        "[tenants.a]\nmodules = [\"x\"]\n[tenants.a.reuse]\nx = 2\nhello-py = 50\n",
        5,
        "tenants.a.reuse.hello-py",
        "module `hello-py` is not one of this tenant's `modules`",
    );
}

#[test]
fn rejects_invalid_tube_names() {
    assert_error(
        "[tenants.a]\nmodules = [\"x\"]\ntubes = { \"-bad\" = \"x\" }\n",
        3,
        "tenants.a.tubes.-bad",
        "`-bad` cannot be a tube",
    );
    assert_error(
        "[tenants.a]\nmodules = [\"x\"]\nput_tubes = [\"ok\", \"sp ace\"]\n",
        3,
        "tenants.a.put_tubes[1]",
        "`sp ace` cannot be a tube",
    );
    let long = "t".repeat(201);
    assert_error(
        &format!("[tenants.a]\nmodules = [\"x\"]\nput_tubes = [\"{long}\"]\n"),
        3,
        "tenants.a.put_tubes[0]",
        "cannot be a tube: a tube name is 1-200 bytes",
    );
}

#[test]
fn rejects_module_names_that_are_not_file_stems() {
    assert_error(
        "[tenants.a]\nmodules = [\"../etc/x\"]\n",
        2,
        "tenants.a.modules[0]",
        "`../etc/x` cannot be a module name",
    );
    assert_error(
        "[tenants.a]\nmodules = [\"ok\", \"\"]\n",
        2,
        "tenants.a.modules[1]",
        "`` cannot be a module name",
    );
    assert_error(
        "[tenants.a]\nmodules = [\"resize.wasm\"]\n",
        2,
        "tenants.a.modules[0]",
        "write the file stem, `resize`",
    );
    assert_error(
        "[tenants.a]\nmodules = [\"has space\"]\n",
        2,
        "tenants.a.modules[0]",
        "it also names its tube",
    );
}

#[test]
fn rejects_zero_and_non_positive_settings() {
    let tenant = "[tenants.a]\nmodules = [\"x\"]\n";
    assert_error(
        &format!("{tenant}concurrency = 0\n"),
        3,
        "tenants.a.concurrency",
        "must be at least 1",
    );
    assert_error(
        "[defaults]\nconcurrency = 0\n",
        2,
        "defaults.concurrency",
        "must be at least 1",
    );
    assert_error(
        &format!("{tenant}reuse = 0\n"),
        3,
        "tenants.a.reuse",
        "must be at least 1",
    );
    assert_error(
        "[defaults]\nreuse = 0\n",
        2,
        "defaults.reuse",
        "must be at least 1",
    );
    assert_error(
        &format!("{tenant}max_module_mb = 0\n"),
        3,
        "tenants.a.max_module_mb",
        "must be at least 1",
    );
    assert_error(
        "[defaults]\nmax_module_mb = 0\n",
        2,
        "defaults.max_module_mb",
        "must be at least 1",
    );
    assert_error(
        &format!("{tenant}max_module_mb = {}\n", u64::MAX >> 10),
        3,
        "tenants.a.max_module_mb",
        "too large",
    );
    assert_error(
        "[tenants.a]\nmodules = [\"x\", \"hello.py\"]\n[tenants.a.reuse]\nx = 2\n\"hello.py\" = 0\n",
        5,
        "tenants.a.reuse.\"hello.py\"",
        "must be at least 1",
    );
    assert_error(
        &format!("{tenant}max_attempts = 0\n"),
        3,
        "tenants.a.max_attempts",
        "must be at least 1",
    );
    assert_error(
        &format!("{tenant}memory_mb = 0\n"),
        3,
        "tenants.a.memory_mb",
        "must be at least 1",
    );
    assert_error(
        &format!("{tenant}timeout_secs = 0\n"),
        3,
        "tenants.a.timeout_secs",
        "must be a positive number of seconds, got 0",
    );
    assert_error(
        "[defaults]\ntimeout_secs = -1.5\n",
        2,
        "defaults.timeout_secs",
        "must be a positive number of seconds, got -1.5",
    );
    assert_error(
        &format!("{tenant}backoff_secs = -1\n"),
        3,
        "tenants.a.backoff_secs",
        "must be a non-negative number of seconds",
    );
    assert_error(
        &format!("{tenant}backoff_max_secs = nan\n"),
        3,
        "tenants.a.backoff_max_secs",
        "must be a non-negative number of seconds",
    );
}

#[test]
fn rejects_bad_dir_grants() {
    let dirs = |entry: &str| format!("[tenants.a]\nmodules = [\"x\"]\ndirs = [\n  {entry},\n]\n");
    assert_error(
        &dirs(&format!(
            "{{ host = '{MANIFEST_DIR}', guest = \"/in\", mode = \"rx\" }}"
        )),
        4,
        "tenants.a.dirs[0].mode",
        "expected `ro` or `rw`, got `rx`",
    );
    assert_error(
        &dirs("{ host = \"/nonexistent/beanbox/in\", guest = \"/in\" }"),
        4,
        "tenants.a.dirs[0].host",
        "/nonexistent/beanbox/in does not exist",
    );
    assert_error(
        &dirs(&format!(
            "{{ host = '{MANIFEST_DIR}/Cargo.toml', guest = \"/in\" }}"
        )),
        4,
        "tenants.a.dirs[0].host",
        &format!("{MANIFEST_DIR}/Cargo.toml is not a directory"),
    );
    assert_error(
        &dirs(&format!("{{ host = '{MANIFEST_DIR}', guest = \"in\" }}")),
        4,
        "tenants.a.dirs[0].guest",
        "guest path `in` must be absolute",
    );
    assert_error(
        &format!(
            "[tenants.a]\nmodules = [\"x\"]\n\
             [[tenants.a.dirs]]\nhost = '{MANIFEST_DIR}'\nguest = \"/in\"\n\
             [[tenants.a.dirs]]\nhost = '{MANIFEST_DIR}'\nguest = \"/in\"\n"
        ),
        8,
        "tenants.a.dirs[1].guest",
        "guest path `/in` is granted twice",
    );
}

#[test]
fn rejects_bad_env_names() {
    assert_error(
        "[tenants.a]\nmodules = [\"x\"]\nenv = { \"\" = \"v\" }\n",
        3,
        "tenants.a.env.\"\"",
        "cannot be an environment variable name",
    );
    assert_error(
        "[tenants.a]\nmodules = [\"x\"]\n[tenants.a.env]\nOK = \"1\"\n\"A=B\" = \"v\"\n",
        5,
        "tenants.a.env.\"A=B\"",
        "`A=B` cannot be an environment variable name",
    );
}

#[test]
fn rejects_a_tenant_without_modules() {
    assert_error(
        "[tenants.ok]\nmodules = [\"x\"]\n\n[tenants.empty]\nfuel = 1\n",
        4,
        "tenants.empty.modules",
        "a tenant needs at least one module",
    );
    assert_error(
        "[tenants.empty]\nmodules = []\n",
        2,
        "tenants.empty.modules",
        "a tenant needs at least one module",
    );
}

/// The tenant serving `tube`, and the module that serves it.
fn route_of<'a>(config: &'a Config, tube: &str) -> Option<(&'a Tenant, &'a str)> {
    config.tenants.iter().find_map(|t| {
        t.routes
            .iter()
            .find(|r| r.tube == tube)
            .map(|r| (t, r.module.as_str()))
    })
}

/// The tenant that runs `module`.
fn tenant_of_module<'a>(config: &'a Config, module: &str) -> Option<&'a Tenant> {
    config
        .tenants
        .iter()
        .find(|t| t.routes.iter().any(|r| r.module == module))
}
