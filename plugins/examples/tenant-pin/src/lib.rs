//! Tenant pinning with spill-over: a tenant's own backends while they have room, else any.
use switchyard_policy::{ConfigError, RoutingPolicy, pick, routing::*, routing_policy};

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct TenantPin {
    header: String,
    tenants: std::collections::HashMap<String, Vec<u32>>,
    max_in_flight: u32,
}

impl RoutingPolicy for TenantPin {
    type Config = Self;
    fn init(config: Self) -> Result<Self, ConfigError> {
        Ok(config)
    }
    fn wanted_headers(&self) -> Vec<String> {
        vec![self.header.clone()]
    }
    fn choose(&mut self, req: &Request, all: &[Candidate]) -> Decision {
        let home = req.header(&self.header).and_then(|t| self.tenants.get(t));
        let open = || all.iter().filter(|c| c.in_flight < self.max_in_flight);
        let mine = open().filter(|c| home.is_some_and(|h| h.contains(&c.index)));
        Decision::backend_or_503(pick::least_loaded(mine).or_else(|| pick::least_loaded(open())))
    }
}
routing_policy!(TenantPin);

#[test]
fn pins_then_spills_over() {
    let json = r#"{"header": "x-tenant", "tenants": {"acme": [1]}, "max-in-flight": 8}"#;
    let mut policy = TenantPin::from_json(json).unwrap();
    let acme = Request::get("/").with_header("x-tenant", "acme");
    let mut all = [Candidate::new(0), Candidate::new(1)];
    assert_eq!(policy.choose(&acme, &all), Decision::Backend(1));
    all[1].in_flight = 8; // full: spill over
    assert_eq!(policy.choose(&acme, &all), Decision::Backend(0));
}
