use super::*;
use std::path::Path;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, Path::new("test.toml"))
}

#[test]
fn a_full_config_parses_with_defaults() {
    let config = parse(
        r#"
        [gateway]
        listen = "127.0.0.1:9000"

        [[service]]
        name = "hello"
        image = "hello.img"
        path_prefix = "/hello"

        [[service]]
        name = "kv"
        crate = "examples/kv"
        host = "kv.local"
        mode = "per-request"
        max_instances = 8
        "#,
    )
    .unwrap();
    assert_eq!(config.gateway.listen.port(), 9000);
    assert_eq!(config.gateway.admin_listen.port(), 8081);
    assert_eq!(config.services.len(), 2);
    let hello = &config.services[0];
    assert_eq!((hello.mem_mib, hello.guest_port, hello.min_instances), (32, 80, 0));
    assert_eq!(config.services[1].mode, Mode::PerRequest);
    assert_eq!(config.services[1].max_instances, 8);
}

#[test]
fn errors_name_the_field_and_the_reason() {
    let cases = [
        ("name = \"a b\"\nimage = \"x\"\npath_prefix = \"/\"", "`name` must be"),
        ("name = \"a\"\npath_prefix = \"/\"", "`image` is missing"),
        ("name = \"a\"\nimage = \"x\"\ncrate = \"y\"\npath_prefix = \"/\"", "both set"),
        ("name = \"a\"\nimage = \"x\"", "`path_prefix` is missing"),
        ("name = \"a\"\nimage = \"x\"\npath_prefix = \"nope\"", "must start with '/'"),
        ("name = \"a\"\nimage = \"x\"\npath_prefix = \"/\"\nmem_mib = 3", "`mem_mib`"),
        ("name = \"a\"\nimage = \"x\"\npath_prefix = \"/\"\nmax_instances = 0", "`max_instances`"),
        (
            "name = \"a\"\nimage = \"x\"\npath_prefix = \"/\"\nmin_instances = 5\nmax_instances = 2",
            "`min_instances` must not exceed",
        ),
        (
            "name = \"a\"\nimage = \"x\"\npath_prefix = \"/\"\nmode = \"sometimes\"",
            "unknown variant",
        ),
        ("name = \"a\"\nimage = \"x\"\npath_prefix = \"/\"\nmem = 3", "unknown field `mem`"),
        ("name = \"a\"\nimage = \"x\"\npath_prefix = \"/\"\nconcurrency = -1", "concurrency"),
    ];
    for (service, needle) in cases {
        let text = format!("[[service]]\n{service}\n");
        let err = parse(&text).expect_err(service).to_string();
        assert!(err.contains(needle), "{service:?}: {err}");
        assert!(err.starts_with("test.toml"), "{err}");
    }
}

#[test]
fn duplicate_names_and_public_admin_are_refused() {
    let dup = "[[service]]\nname = \"a\"\nimage = \"x\"\npath_prefix = \"/\"\n\
               [[service]]\nname = \"a\"\nimage = \"y\"\npath_prefix = \"/y\"\n";
    assert!(parse(dup).unwrap_err().to_string().contains("two services are named \"a\""));
    let public = "[gateway]\nadmin_listen = \"0.0.0.0:8081\"\n";
    assert!(parse(public).unwrap_err().to_string().contains("not a loopback address"));
    let allowed = "[gateway]\nadmin_listen = \"0.0.0.0:8081\"\nadmin_public = true\n";
    assert!(parse(allowed).is_ok());
}

#[test]
fn the_builtin_config_is_valid() {
    let config = Config::builtin(Path::new("/repo"));
    config.validate(Path::new("builtin")).unwrap();
    let names: Vec<&str> = config.services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["http-hello", "kv", "axum"]);
    assert!(config.services.iter().all(|s| s.min_instances == 0));
    let axum = &config.services[2];
    assert_eq!(axum.path_prefix.as_deref(), Some("/axum"));
    assert_eq!(axum.args, ["prefix=/axum"], "axum-hello serves its routes under its prefix");
}

#[test]
fn tap_services_are_validated() {
    let base = "[[service]]\nname = \"t\"\nimage = \"x\"\npath_prefix = \"/t\"\n";
    let ok = format!(
        "{base}max_instances = 1\nwarm_shells = 0\ntap = {{ name = \"tap0\", ip = \"10.0.0.2/24\" }}\n"
    );
    let config = parse(&ok).unwrap();
    let tap = config.services[0].tap.clone().unwrap();
    assert_eq!(tap.address(), Some(("10.0.0.2".parse().unwrap(), 24)));
    let many = format!("{base}tap = {{ name = \"tap0\", ip = \"10.0.0.2/24\" }}\n");
    assert!(parse(&many).unwrap_err().to_string().contains("carries one instance"));
    let bad_ip = format!(
        "{base}max_instances = 1\nwarm_shells = 0\ntap = {{ name = \"tap0\", ip = \"10.0.0.2\" }}\n"
    );
    assert!(parse(&bad_ip).unwrap_err().to_string().contains("IPv4 address with a prefix"));
}

#[test]
fn host_ports_are_validated() {
    let base = "[[service]]\nname = \"db\"\nimage = \"x\"\npath_prefix = \"/db\"\n";
    let ok = parse(&format!("{base}allow_host_ports = [5432, 6379]\n")).unwrap();
    assert_eq!(ok.services[0].allow_host_ports, [5432, 6379]);
    assert!(parse(base).unwrap().services[0].allow_host_ports.is_empty());
    let cases = [
        ("allow_host_ports = [0]", "must not contain port 0"),
        ("allow_host_ports = [70000]", "allow_host_ports"),
        (
            "allow_host_ports = [5432]\nmax_instances = 1\nwarm_shells = 0\n\
             tap = { name = \"tap0\", ip = \"10.0.0.2/24\" }",
            "is for user-mode networking",
        ),
        ("allow_host_ports = [5432]\nsnapshot = true", "resume the snapshot's connections"),
    ];
    for (extra, needle) in cases {
        let err = parse(&format!("{base}{extra}\n")).expect_err(extra).to_string();
        assert!(err.contains(needle), "{extra:?}: {err}");
    }
}
