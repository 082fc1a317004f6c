//! A component that looks like a routing plugin but is not one: it exports
//! `init` and `wanted-headers` correctly, but `choose` with the wrong
//! signature and nothing else. The proxy must refuse to load it, with an
//! error that names the mismatch. Never load it in production.

wit_bindgen::generate!({
    inline: r#"
        package switchyard-test:wrong;

        world impostor {
            export init: func(config: string) -> result<_, string>;
            export wanted-headers: func() -> list<string>;
            export choose: func(n: u32) -> u32;
        }
    "#,
    world: "impostor",
});

struct Impostor;

impl Guest for Impostor {
    fn init(_config: String) -> Result<(), String> {
        Ok(())
    }

    fn wanted_headers() -> Vec<String> {
        Vec::new()
    }

    fn choose(n: u32) -> u32 {
        n
    }
}

export!(Impostor);
