//! A routing plugin that misbehaves on demand, for the proxy's sandbox
//! tests. Never load it in production.
//!
//! `init` obeys `{"init": MODE}`: `ok` (default), `error`, `trap`, `loop`,
//! or `bad-header` (declares an illegal header name).
//!
//! `choose` obeys the request path:
//!
//! | path         | behaviour                                             |
//! |--------------|-------------------------------------------------------|
//! | `/loop`      | spins forever                                         |
//! | `/grow`      | allocates 1 MiB blocks until memory runs out          |
//! | `/recurse`   | unbounded recursion                                   |
//! | `/trap`      | panics (a trap, since plugins abort on panic)         |
//! | `/bad-index` | returns a backend index that is not a candidate       |
//! | `/bad-status`| answers with status 99                                |
//! | `/big-body`  | answers with a 1 MiB body                             |
//! | `/slow`      | busy-waits 1 ms, then behaves                         |
//! | `/count`     | answers 200 with the number of calls this instance saw |
//! | anything else| picks the first candidate                             |

use std::cell::Cell;
use std::hint::black_box;

wit_bindgen::generate!({ world: "routing", path: "../../../wit" });

use switchyard::policy::host;
use switchyard::policy::routing_types::Response;

thread_local! {
    static BAD_HEADER: Cell<bool> = const { Cell::new(false) };
    static CALLS: Cell<u64> = const { Cell::new(0) };
}

struct Hostile;

impl Guest for Hostile {
    fn init(config: String) -> Result<(), String> {
        let mode = config
            .split("\"init\"")
            .nth(1)
            .and_then(|rest| rest.split('"').nth(1))
            .unwrap_or("ok");
        match mode {
            "ok" => Ok(()),
            "error" => Err("hostile: refusing to start".into()),
            "trap" => panic!("hostile: trap in init"),
            "loop" => spin(),
            "bad-header" => {
                BAD_HEADER.set(true);
                Ok(())
            }
            other => Err(format!("hostile: unknown init mode {other}")),
        }
    }

    fn wanted_headers() -> Vec<String> {
        if BAD_HEADER.get() {
            vec!["bad header\n".into()]
        } else {
            vec!["x-test".into()]
        }
    }

    fn choose(req: Request, candidates: Vec<Candidate>) -> Decision {
        CALLS.set(CALLS.get() + 1);
        match req.path.as_str() {
            "/loop" => spin(),
            "/grow" => grow(),
            "/recurse" => Decision::Backend(recurse(black_box(1)) as u32),
            "/trap" => panic!("hostile: trap on request"),
            "/bad-index" => Decision::Backend(u32::MAX),
            "/bad-status" => Decision::Respond(Response {
                status: 99,
                body: String::new(),
            }),
            "/big-body" => Decision::Respond(Response {
                status: 200,
                body: "x".repeat(1 << 20),
            }),
            "/count" => Decision::Respond(Response {
                status: 200,
                body: CALLS.get().to_string(),
            }),
            path => {
                if path == "/slow" {
                    let start = host::now_ns();
                    while host::now_ns() - start < 1_000_000 {}
                }
                match candidates.first() {
                    Some(c) => Decision::Backend(c.index),
                    None => Decision::Reject,
                }
            }
        }
    }
}

/// Loops without end; only the host's deadline stops it.
fn spin() -> ! {
    let mut n = 0u64;
    loop {
        n = black_box(n.wrapping_add(1));
    }
}

/// Keeps allocating until the host refuses to grow memory.
fn grow() -> ! {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        hoard.push(black_box(vec![1u8; 1 << 20]));
        black_box(&hoard);
    }
}

/// Recurses until the host's stack limit stops it.
#[allow(unconditional_recursion, reason = "the point of this plugin")]
fn recurse(depth: u64) -> u64 {
    let frame = black_box([depth; 16]);
    recurse(black_box(depth + 1)) + frame[black_box(3)]
}

export!(Hostile);
