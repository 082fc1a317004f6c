# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_switchyard_global_optspecs
    string join \n c/config= log-format= log-level= workers= no-access-log h/help V/version
end

function __fish_switchyard_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_switchyard_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_switchyard_using_subcommand
    set -l cmd (__fish_switchyard_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c switchyard -n "__fish_switchyard_needs_command" -s c -l config -d 'Config file to run (TOML)' -r -F
complete -c switchyard -n "__fish_switchyard_needs_command" -l log-format -d 'Log format on stderr: `text` (the default), or `json` (one object per line with `timestamp`, `level`, `target`, `message` and the event\'s fields)' -r -f -a "text\t''
json\t''"
complete -c switchyard -n "__fish_switchyard_needs_command" -l log-level -d 'Log filter, e.g. `info` (the default) or `switchyard=debug`' -r
complete -c switchyard -n "__fish_switchyard_needs_command" -l workers -d 'Threads that serve client connections, each with its own event loop (default: one per core)' -r
complete -c switchyard -n "__fish_switchyard_needs_command" -l no-access-log -d 'Do not write one access-log line per request'
complete -c switchyard -n "__fish_switchyard_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c switchyard -n "__fish_switchyard_needs_command" -s V -l version -d 'Print version'
complete -c switchyard -n "__fish_switchyard_needs_command" -f -a "check" -d 'Validate a config file and exit (non-zero on error), like `nginx -t`'
complete -c switchyard -n "__fish_switchyard_needs_command" -f -a "plugin" -d 'Write, check, run and measure WebAssembly policy plugins'
complete -c switchyard -n "__fish_switchyard_needs_command" -f -a "ctl" -d 'Talk to a running proxy\'s admin API: tables and one-line answers, or the raw JSON with `--json`'
complete -c switchyard -n "__fish_switchyard_needs_command" -f -a "cluster" -d 'Work with a fleet of instances coordinated through etcd (`[cluster]`)'
complete -c switchyard -n "__fish_switchyard_needs_command" -f -a "upgrade" -d 'Hand a running proxy over to a new process of its binary (after a package upgrade replaced it) without refusing a connection; the old process drains'
complete -c switchyard -n "__fish_switchyard_needs_command" -f -a "completions" -d 'Print a shell completion script (bash, zsh, fish, elvish, powershell)'
complete -c switchyard -n "__fish_switchyard_needs_command" -f -a "man" -d 'Print the man page (roff), e.g. `switchyard man | man -l -`'
complete -c switchyard -n "__fish_switchyard_needs_command" -f -a "demo" -d 'Start five named demo backends in two pools, blue (one of them flaky) and green, front them with an embedded config, and print commands to try'
complete -c switchyard -n "__fish_switchyard_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c switchyard -n "__fish_switchyard_using_subcommand check" -s c -l config -d 'The config file to check (TOML)' -r -F
complete -c switchyard -n "__fish_switchyard_using_subcommand check" -s h -l help -d 'Print help'
complete -c switchyard -n "__fish_switchyard_using_subcommand plugin; and not __fish_seen_subcommand_from new check run bench help" -s h -l help -d 'Print help'
complete -c switchyard -n "__fish_switchyard_using_subcommand plugin; and not __fish_seen_subcommand_from new check run bench help" -f -a "new" -d 'Make a plugin crate (policy, unit tests, the SDK) that builds with `cargo build --release`, tests with `cargo test` and loads as it is'
complete -c switchyard -n "__fish_switchyard_using_subcommand plugin; and not __fish_seen_subcommand_from new check run bench help" -f -a "check" -d 'Report which world a component implements and which imports it gets; with `--config`, also load it and run `init` with that config'
complete -c switchyard -n "__fish_switchyard_using_subcommand plugin; and not __fish_seen_subcommand_from new check run bench help" -f -a "run" -d 'Call a plugin on a request and candidates (routing), a probe result (health-check) or an outcome (recovery), from flags, a JSON file or the samples of a running proxy; print each decision and its cost'
complete -c switchyard -n "__fish_switchyard_using_subcommand plugin; and not __fish_seen_subcommand_from new check run bench help" -f -a "bench" -d 'Measure a plugin\'s per-call cost (on the same inputs as `run`)'
complete -c switchyard -n "__fish_switchyard_using_subcommand plugin; and not __fish_seen_subcommand_from new check run bench help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c switchyard -n "__fish_switchyard_using_subcommand plugin; and __fish_seen_subcommand_from new" -l kind -d 'routing, health-check (or health) or recovery' -r
complete -c switchyard -n "__fish_switchyard_using_subcommand plugin; and __fish_seen_subcommand_from new" -l dir -d 'Where to make it' -r -F
complete -c switchyard -n "__fish_switchyard_using_subcommand plugin; and __fish_seen_subcommand_from new" -s h -l help -d 'Print help'
complete -c switchyard -n "__fish_switchyard_using_subcommand plugin; and __fish_seen_subcommand_from check" -s c -l config -d 'The plugin\'s `config` table as JSON (what `init` receives), inline or a file holding it, e.g. `{"header": "x-tenant"}`. Default for `run` and `bench`: `{}`, what the proxy passes for a table without `config`; `check` runs `init` only when it is given' -r -F
complete -c switchyard -n "__fish_switchyard_using_subcommand plugin; and __fish_seen_subcommand_from check" -l kind -d 'routing, health-check (or health) or recovery; by default the one world the component implements' -r
complete -c switchyard -n "__fish_switchyard_using_subcommand plugin; and __fish_seen_subcommand_from check" -l timeout -d 'Per-call deadline (default: 2ms, the proxy\'s, for `check`; 1s for `run` and `bench`, which show costs)' -r
complete -c switchyard -n "__fish_switchyard_using_subcommand plugin; and __fish_seen_subcommand_from check" -l memory -d 'Memory cap per instance' -r
complete -c switchyard -n "__fish_switchyard_using_subcommand plugin; and __fish_seen_subcommand_from check" -s h -l help -d 'Print help'
complete -c switchyard -n "__fish_switchyard_using_subcommand plugin; and __fish_seen_subcommand_from run" -s c -l config -d 'The plugin\'s `config` table as JSON (what `init` receives), inline or a file holding it, e.g. `{"header": "x-tenant"}`. Default for `run` and `bench`: `{}`, what the proxy passes for a table without `config`; `check` runs `init` only when it is given' -r -F
complete -c switchyard -n "__fish_switchyard_using_subcommand plugin; and __fish_seen_subcommand_from run" -l kind -d 'routing, health-check (or health) or recovery; by default the one world the component implements' -r
complete -c switchyard -n "__fish_switchyard_using_subcommand plugin; and __fish_seen_subcommand_from run" -l timeout -d 'Per-call deadline (default: 2ms, the proxy\'s, for `check`; 1s for `run` and `bench`, which show costs)' -r
complete -c switchyard -n "__fish_switchyard_using_subcommand plugin; and __fish_seen_subcommand_from run" -l memory -d 'Memory cap per instance' -r
complete -c switchyard -n "__fish_switchyard_using_subcommand plugin; and __fish_seen_subcommand_from run" -l input -d 'Cases from a JSON file (`-` for standard input): one case, an array of cases, or a samples document (see plugins/README.md)' -r -F
complete -c switchyard -n "__fish_switchyard_using_subcommand plugin; and __fish_seen_subcommand_from run" -l samples -d 'Recorded cases from a running proxy: http://ADMIN/plugins/NAME/samples (routing plugins)' -r
complete -c switchyard -n "__fish_switchyard_using_subcommand plugin; and __fish_seen_subcommand_from run" -l token -d 'Bearer token for `--samples`' -r
complete -c switchyard -n "__fish_switchyard_using_subcommand plugin; and __fish_seen_subcommand_from run" -l method -d 'Request method (routing)' -r
complete -c switchyard -n "__fish_switchyard_using_subcommand plugin; and __fish_seen_subcommand_from run" -l path -d 'Request path (routing)' -r
complete -c switchyard -n "__fish_switchyard_using_subcommand plugin; and __fish_seen_subcommand_from run" -l host -d 'Requested host (routing)' -r
complete -c switchyard -n "__fish_switchyard_using_subcommand plugin; and __fish_seen_subcommand_from run" -l client-ip -d 'Client address (routing)' -r
complete -c switchyard -n "__fish_switchyard_using_subcommand plugin; and __fish_seen_subcommand_from run" -l header -d '`NAME: VALUE`, a request header (routing) or a response header (health); repeatable' -r
complete -c switchyard -n "__fish_switchyard_using_subcommand plugin; and __fish_seen_subcommand_from run" -l candidates -d 'A count of idle candidates, or a JSON array of candidates (routing; default 3)' -r
complete -c switchyard -n "__fish_switchyard_using_subcommand plugin; and __fish_seen_subcommand_from run" -l status -d 'Response status (health; default 200)' -r
complete -c switchyard -n "__fish_switchyard_using_subcommand plugin; and __fish_seen_subcommand_from run" -l body -d 'Response body (health)' -r
complete -c switchyard -n "__fish_switchyard_using_subcommand plugin; and __fish_seen_subcommand_from run" -l probe-error -d 'The probe got no answer: timeout, refused, reset or other (health)' -r
complete -c switchyard -n "__fish_switchyard_using_subcommand plugin; and __fish_seen_subcommand_from run" -l outcome -d 'success, connect, timeout, reset, server-error, other or tick (recovery)' -r
complete -c switchyard -n "__fish_switchyard_using_subcommand plugin; and __fish_seen_subcommand_from run" -l failures-in-a-row -d 'Failures in a row so far (recovery)' -r
complete -c switchyard -n "__fish_switchyard_using_subcommand plugin; and __fish_seen_subcommand_from run" -l state -d 'closed, open or half-open (recovery)' -r
complete -c switchyard -n "__fish_switchyard_using_subcommand plugin; and __fish_seen_subcommand_from run" -l json -d 'Print one JSON object per case'
complete -c switchyard -n "__fish_switchyard_using_subcommand plugin; and __fish_seen_subcommand_from run" -s h -l help -d 'Print help'
complete -c switchyard -n "__fish_switchyard_using_subcommand plugin; and __fish_seen_subcommand_from bench" -s c -l config -d 'The plugin\'s `config` table as JSON (what `init` receives), inline or a file holding it, e.g. `{"header": "x-tenant"}`. Default for `run` and `bench`: `{}`, what the proxy passes for a table without `config`; `check` runs `init` only when it is given' -r -F
complete -c switchyard -n "__fish_switchyard_using_subcommand plugin; and __fish_seen_subcommand_from bench" -l kind -d 'routing, health-check (or health) or recovery; by default the one world the component implements' -r
complete -c switchyard -n "__fish_switchyard_using_subcommand plugin; and __fish_seen_subcommand_from bench" -l timeout -d 'Per-call deadline (default: 2ms, the proxy\'s, for `check`; 1s for `run` and `bench`, which show costs)' -r
complete -c switchyard -n "__fish_switchyard_using_subcommand plugin; and __fish_seen_subcommand_from bench" -l memory -d 'Memory cap per instance' -r
complete -c switchyard -n "__fish_switchyard_using_subcommand plugin; and __fish_seen_subcommand_from bench" -l input -d 'Cases from a JSON file (`-` for standard input): one case, an array of cases, or a samples document (see plugins/README.md)' -r -F
complete -c switchyard -n "__fish_switchyard_using_subcommand plugin; and __fish_seen_subcommand_from bench" -l samples -d 'Recorded cases from a running proxy: http://ADMIN/plugins/NAME/samples (routing plugins)' -r
complete -c switchyard -n "__fish_switchyard_using_subcommand plugin; and __fish_seen_subcommand_from bench" -l token -d 'Bearer token for `--samples`' -r
complete -c switchyard -n "__fish_switchyard_using_subcommand plugin; and __fish_seen_subcommand_from bench" -l method -d 'Request method (routing)' -r
complete -c switchyard -n "__fish_switchyard_using_subcommand plugin; and __fish_seen_subcommand_from bench" -l path -d 'Request path (routing)' -r
complete -c switchyard -n "__fish_switchyard_using_subcommand plugin; and __fish_seen_subcommand_from bench" -l host -d 'Requested host (routing)' -r
complete -c switchyard -n "__fish_switchyard_using_subcommand plugin; and __fish_seen_subcommand_from bench" -l client-ip -d 'Client address (routing)' -r
complete -c switchyard -n "__fish_switchyard_using_subcommand plugin; and __fish_seen_subcommand_from bench" -l header -d '`NAME: VALUE`, a request header (routing) or a response header (health); repeatable' -r
complete -c switchyard -n "__fish_switchyard_using_subcommand plugin; and __fish_seen_subcommand_from bench" -l candidates -d 'A count of idle candidates, or a JSON array of candidates (routing; default 3)' -r
complete -c switchyard -n "__fish_switchyard_using_subcommand plugin; and __fish_seen_subcommand_from bench" -l status -d 'Response status (health; default 200)' -r
complete -c switchyard -n "__fish_switchyard_using_subcommand plugin; and __fish_seen_subcommand_from bench" -l body -d 'Response body (health)' -r
complete -c switchyard -n "__fish_switchyard_using_subcommand plugin; and __fish_seen_subcommand_from bench" -l probe-error -d 'The probe got no answer: timeout, refused, reset or other (health)' -r
complete -c switchyard -n "__fish_switchyard_using_subcommand plugin; and __fish_seen_subcommand_from bench" -l outcome -d 'success, connect, timeout, reset, server-error, other or tick (recovery)' -r
complete -c switchyard -n "__fish_switchyard_using_subcommand plugin; and __fish_seen_subcommand_from bench" -l failures-in-a-row -d 'Failures in a row so far (recovery)' -r
complete -c switchyard -n "__fish_switchyard_using_subcommand plugin; and __fish_seen_subcommand_from bench" -l state -d 'closed, open or half-open (recovery)' -r
complete -c switchyard -n "__fish_switchyard_using_subcommand plugin; and __fish_seen_subcommand_from bench" -l calls -d 'Calls to measure (after a warm-up of a tenth as many)' -r
complete -c switchyard -n "__fish_switchyard_using_subcommand plugin; and __fish_seen_subcommand_from bench" -s h -l help -d 'Print help'
complete -c switchyard -n "__fish_switchyard_using_subcommand plugin; and __fish_seen_subcommand_from help" -f -a "new" -d 'Make a plugin crate (policy, unit tests, the SDK) that builds with `cargo build --release`, tests with `cargo test` and loads as it is'
complete -c switchyard -n "__fish_switchyard_using_subcommand plugin; and __fish_seen_subcommand_from help" -f -a "check" -d 'Report which world a component implements and which imports it gets; with `--config`, also load it and run `init` with that config'
complete -c switchyard -n "__fish_switchyard_using_subcommand plugin; and __fish_seen_subcommand_from help" -f -a "run" -d 'Call a plugin on a request and candidates (routing), a probe result (health-check) or an outcome (recovery), from flags, a JSON file or the samples of a running proxy; print each decision and its cost'
complete -c switchyard -n "__fish_switchyard_using_subcommand plugin; and __fish_seen_subcommand_from help" -f -a "bench" -d 'Measure a plugin\'s per-call cost (on the same inputs as `run`)'
complete -c switchyard -n "__fish_switchyard_using_subcommand plugin; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c switchyard -n "__fish_switchyard_using_subcommand ctl; and not __fish_seen_subcommand_from status why drain enable disable weight switch split reload rollout add-backend remove-backend help" -l admin -d 'Admin address (host:port). A host name other than `localhost` must be in the proxy\'s `admin.allowed_hosts`' -r
complete -c switchyard -n "__fish_switchyard_using_subcommand ctl; and not __fish_seen_subcommand_from status why drain enable disable weight switch split reload rollout add-backend remove-backend help" -l token -d 'Bearer token for the admin API (`admin.token`)' -r
complete -c switchyard -n "__fish_switchyard_using_subcommand ctl; and not __fish_seen_subcommand_from status why drain enable disable weight switch split reload rollout add-backend remove-backend help" -l if-revision -d 'In a fleet: refuse the change (409) if what it touches changed after this etcd revision (the `revision` of `GET /cluster` or of an earlier answer)' -r
complete -c switchyard -n "__fish_switchyard_using_subcommand ctl; and not __fish_seen_subcommand_from status why drain enable disable weight switch split reload rollout add-backend remove-backend help" -l json -d 'Print the admin API\'s raw JSON answer instead of a table or a line'
complete -c switchyard -n "__fish_switchyard_using_subcommand ctl; and not __fish_seen_subcommand_from status why drain enable disable weight switch split reload rollout add-backend remove-backend help" -s h -l help -d 'Print help'
complete -c switchyard -n "__fish_switchyard_using_subcommand ctl; and not __fish_seen_subcommand_from status why drain enable disable weight switch split reload rollout add-backend remove-backend help" -f -a "status" -d 'Pools, backends and routes as tables'
complete -c switchyard -n "__fish_switchyard_using_subcommand ctl; and not __fish_seen_subcommand_from status why drain enable disable weight switch split reload rollout add-backend remove-backend help" -f -a "why" -d 'Why each backend of a pool does or does not get traffic: operator, health checks, breaker, weight, or its share of recent requests and who chose it'
complete -c switchyard -n "__fish_switchyard_using_subcommand ctl; and not __fish_seen_subcommand_from status why drain enable disable weight switch split reload rollout add-backend remove-backend help" -f -a "drain" -d 'Stop sending new requests to a backend; in-flight ones finish'
complete -c switchyard -n "__fish_switchyard_using_subcommand ctl; and not __fish_seen_subcommand_from status why drain enable disable weight switch split reload rollout add-backend remove-backend help" -f -a "enable" -d 'Put a backend back into rotation'
complete -c switchyard -n "__fish_switchyard_using_subcommand ctl; and not __fish_seen_subcommand_from status why drain enable disable weight switch split reload rollout add-backend remove-backend help" -f -a "disable" -d 'Take a backend out of rotation at once'
complete -c switchyard -n "__fish_switchyard_using_subcommand ctl; and not __fish_seen_subcommand_from status why drain enable disable weight switch split reload rollout add-backend remove-backend help" -f -a "weight" -d 'Set a backend\'s weight'
complete -c switchyard -n "__fish_switchyard_using_subcommand ctl; and not __fish_seen_subcommand_from status why drain enable disable weight switch split reload rollout add-backend remove-backend help" -f -a "switch" -d 'Move a route to another pool (blue/green). Refused when the pool has no usable backend, unless `--force`'
complete -c switchyard -n "__fish_switchyard_using_subcommand ctl; and not __fish_seen_subcommand_from status why drain enable disable weight switch split reload rollout add-backend remove-backend help" -f -a "split" -d 'Split a route across pools by percentage (adding up to 100), e.g. `blue=90 green=10`. Refused when a pool given a share has no usable backend, unless `--force`'
complete -c switchyard -n "__fish_switchyard_using_subcommand ctl; and not __fish_seen_subcommand_from status why drain enable disable weight switch split reload rollout add-backend remove-backend help" -f -a "reload" -d 'Reload the config file'
complete -c switchyard -n "__fish_switchyard_using_subcommand ctl; and not __fish_seen_subcommand_from status why drain enable disable weight switch split reload rollout add-backend remove-backend help" -f -a "rollout" -d 'Move a route to another pool in guarded steps, or stop a running rollout'
complete -c switchyard -n "__fish_switchyard_using_subcommand ctl; and not __fish_seen_subcommand_from status why drain enable disable weight switch split reload rollout add-backend remove-backend help" -f -a "add-backend" -d 'Add a backend to a pool at run time'
complete -c switchyard -n "__fish_switchyard_using_subcommand ctl; and not __fish_seen_subcommand_from status why drain enable disable weight switch split reload rollout add-backend remove-backend help" -f -a "remove-backend" -d 'Drain a backend, then remove it from its pool'
complete -c switchyard -n "__fish_switchyard_using_subcommand ctl; and not __fish_seen_subcommand_from status why drain enable disable weight switch split reload rollout add-backend remove-backend help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c switchyard -n "__fish_switchyard_using_subcommand ctl; and __fish_seen_subcommand_from status" -l admin -d 'Admin address (host:port). A host name other than `localhost` must be in the proxy\'s `admin.allowed_hosts`' -r
complete -c switchyard -n "__fish_switchyard_using_subcommand ctl; and __fish_seen_subcommand_from status" -l token -d 'Bearer token for the admin API (`admin.token`)' -r
complete -c switchyard -n "__fish_switchyard_using_subcommand ctl; and __fish_seen_subcommand_from status" -l if-revision -d 'In a fleet: refuse the change (409) if what it touches changed after this etcd revision (the `revision` of `GET /cluster` or of an earlier answer)' -r
complete -c switchyard -n "__fish_switchyard_using_subcommand ctl; and __fish_seen_subcommand_from status" -l json -d 'Print the admin API\'s raw JSON answer instead of a table or a line'
complete -c switchyard -n "__fish_switchyard_using_subcommand ctl; and __fish_seen_subcommand_from status" -s h -l help -d 'Print help'
complete -c switchyard -n "__fish_switchyard_using_subcommand ctl; and __fish_seen_subcommand_from why" -l admin -d 'Admin address (host:port). A host name other than `localhost` must be in the proxy\'s `admin.allowed_hosts`' -r
complete -c switchyard -n "__fish_switchyard_using_subcommand ctl; and __fish_seen_subcommand_from why" -l token -d 'Bearer token for the admin API (`admin.token`)' -r
complete -c switchyard -n "__fish_switchyard_using_subcommand ctl; and __fish_seen_subcommand_from why" -l if-revision -d 'In a fleet: refuse the change (409) if what it touches changed after this etcd revision (the `revision` of `GET /cluster` or of an earlier answer)' -r
complete -c switchyard -n "__fish_switchyard_using_subcommand ctl; and __fish_seen_subcommand_from why" -l json -d 'Print the admin API\'s raw JSON answer instead of a table or a line'
complete -c switchyard -n "__fish_switchyard_using_subcommand ctl; and __fish_seen_subcommand_from why" -s h -l help -d 'Print help'
complete -c switchyard -n "__fish_switchyard_using_subcommand ctl; and __fish_seen_subcommand_from drain" -l admin -d 'Admin address (host:port). A host name other than `localhost` must be in the proxy\'s `admin.allowed_hosts`' -r
complete -c switchyard -n "__fish_switchyard_using_subcommand ctl; and __fish_seen_subcommand_from drain" -l token -d 'Bearer token for the admin API (`admin.token`)' -r
complete -c switchyard -n "__fish_switchyard_using_subcommand ctl; and __fish_seen_subcommand_from drain" -l if-revision -d 'In a fleet: refuse the change (409) if what it touches changed after this etcd revision (the `revision` of `GET /cluster` or of an earlier answer)' -r
complete -c switchyard -n "__fish_switchyard_using_subcommand ctl; and __fish_seen_subcommand_from drain" -l json -d 'Print the admin API\'s raw JSON answer instead of a table or a line'
complete -c switchyard -n "__fish_switchyard_using_subcommand ctl; and __fish_seen_subcommand_from drain" -s h -l help -d 'Print help'
complete -c switchyard -n "__fish_switchyard_using_subcommand ctl; and __fish_seen_subcommand_from enable" -l admin -d 'Admin address (host:port). A host name other than `localhost` must be in the proxy\'s `admin.allowed_hosts`' -r
complete -c switchyard -n "__fish_switchyard_using_subcommand ctl; and __fish_seen_subcommand_from enable" -l token -d 'Bearer token for the admin API (`admin.token`)' -r
complete -c switchyard -n "__fish_switchyard_using_subcommand ctl; and __fish_seen_subcommand_from enable" -l if-revision -d 'In a fleet: refuse the change (409) if what it touches changed after this etcd revision (the `revision` of `GET /cluster` or of an earlier answer)' -r
complete -c switchyard -n "__fish_switchyard_using_subcommand ctl; and __fish_seen_subcommand_from enable" -l json -d 'Print the admin API\'s raw JSON answer instead of a table or a line'
complete -c switchyard -n "__fish_switchyard_using_subcommand ctl; and __fish_seen_subcommand_from enable" -s h -l help -d 'Print help'
complete -c switchyard -n "__fish_switchyard_using_subcommand ctl; and __fish_seen_subcommand_from disable" -l admin -d 'Admin address (host:port). A host name other than `localhost` must be in the proxy\'s `admin.allowed_hosts`' -r
complete -c switchyard -n "__fish_switchyard_using_subcommand ctl; and __fish_seen_subcommand_from disable" -l token -d 'Bearer token for the admin API (`admin.token`)' -r
complete -c switchyard -n "__fish_switchyard_using_subcommand ctl; and __fish_seen_subcommand_from disable" -l if-revision -d 'In a fleet: refuse the change (409) if what it touches changed after this etcd revision (the `revision` of `GET /cluster` or of an earlier answer)' -r
complete -c switchyard -n "__fish_switchyard_using_subcommand ctl; and __fish_seen_subcommand_from disable" -l json -d 'Print the admin API\'s raw JSON answer instead of a table or a line'
complete -c switchyard -n "__fish_switchyard_using_subcommand ctl; and __fish_seen_subcommand_from disable" -s h -l help -d 'Print help'
complete -c switchyard -n "__fish_switchyard_using_subcommand ctl; and __fish_seen_subcommand_from weight" -l admin -d 'Admin address (host:port). A host name other than `localhost` must be in the proxy\'s `admin.allowed_hosts`' -r
complete -c switchyard -n "__fish_switchyard_using_subcommand ctl; and __fish_seen_subcommand_from weight" -l token -d 'Bearer token for the admin API (`admin.token`)' -r
complete -c switchyard -n "__fish_switchyard_using_subcommand ctl; and __fish_seen_subcommand_from weight" -l if-revision -d 'In a fleet: refuse the change (409) if what it touches changed after this etcd revision (the `revision` of `GET /cluster` or of an earlier answer)' -r
complete -c switchyard -n "__fish_switchyard_using_subcommand ctl; and __fish_seen_subcommand_from weight" -l json -d 'Print the admin API\'s raw JSON answer instead of a table or a line'
complete -c switchyard -n "__fish_switchyard_using_subcommand ctl; and __fish_seen_subcommand_from weight" -s h -l help -d 'Print help'
complete -c switchyard -n "__fish_switchyard_using_subcommand ctl; and __fish_seen_subcommand_from switch" -l admin -d 'Admin address (host:port). A host name other than `localhost` must be in the proxy\'s `admin.allowed_hosts`' -r
complete -c switchyard -n "__fish_switchyard_using_subcommand ctl; and __fish_seen_subcommand_from switch" -l token -d 'Bearer token for the admin API (`admin.token`)' -r
complete -c switchyard -n "__fish_switchyard_using_subcommand ctl; and __fish_seen_subcommand_from switch" -l if-revision -d 'In a fleet: refuse the change (409) if what it touches changed after this etcd revision (the `revision` of `GET /cluster` or of an earlier answer)' -r
complete -c switchyard -n "__fish_switchyard_using_subcommand ctl; and __fish_seen_subcommand_from switch" -l force -d 'Switch even though the pool has no usable backend right now'
complete -c switchyard -n "__fish_switchyard_using_subcommand ctl; and __fish_seen_subcommand_from switch" -l json -d 'Print the admin API\'s raw JSON answer instead of a table or a line'
complete -c switchyard -n "__fish_switchyard_using_subcommand ctl; and __fish_seen_subcommand_from switch" -s h -l help -d 'Print help'
complete -c switchyard -n "__fish_switchyard_using_subcommand ctl; and __fish_seen_subcommand_from split" -l sticky -d 'Keep each client on one side: `header:NAME` or `cookie:NAME`' -r
complete -c switchyard -n "__fish_switchyard_using_subcommand ctl; and __fish_seen_subcommand_from split" -l admin -d 'Admin address (host:port). A host name other than `localhost` must be in the proxy\'s `admin.allowed_hosts`' -r
complete -c switchyard -n "__fish_switchyard_using_subcommand ctl; and __fish_seen_subcommand_from split" -l token -d 'Bearer token for the admin API (`admin.token`)' -r
complete -c switchyard -n "__fish_switchyard_using_subcommand ctl; and __fish_seen_subcommand_from split" -l if-revision -d 'In a fleet: refuse the change (409) if what it touches changed after this etcd revision (the `revision` of `GET /cluster` or of an earlier answer)' -r
complete -c switchyard -n "__fish_switchyard_using_subcommand ctl; and __fish_seen_subcommand_from split" -l force -d 'Split even though a pool has no usable backend right now'
complete -c switchyard -n "__fish_switchyard_using_subcommand ctl; and __fish_seen_subcommand_from split" -l json -d 'Print the admin API\'s raw JSON answer instead of a table or a line'
complete -c switchyard -n "__fish_switchyard_using_subcommand ctl; and __fish_seen_subcommand_from split" -s h -l help -d 'Print help'
complete -c switchyard -n "__fish_switchyard_using_subcommand ctl; and __fish_seen_subcommand_from reload" -l admin -d 'Admin address (host:port). A host name other than `localhost` must be in the proxy\'s `admin.allowed_hosts`' -r
complete -c switchyard -n "__fish_switchyard_using_subcommand ctl; and __fish_seen_subcommand_from reload" -l token -d 'Bearer token for the admin API (`admin.token`)' -r
complete -c switchyard -n "__fish_switchyard_using_subcommand ctl; and __fish_seen_subcommand_from reload" -l if-revision -d 'In a fleet: refuse the change (409) if what it touches changed after this etcd revision (the `revision` of `GET /cluster` or of an earlier answer)' -r
complete -c switchyard -n "__fish_switchyard_using_subcommand ctl; and __fish_seen_subcommand_from reload" -l json -d 'Print the admin API\'s raw JSON answer instead of a table or a line'
complete -c switchyard -n "__fish_switchyard_using_subcommand ctl; and __fish_seen_subcommand_from reload" -s h -l help -d 'Print help'
complete -c switchyard -n "__fish_switchyard_using_subcommand ctl; and __fish_seen_subcommand_from rollout" -l to -d 'The pool to roll out to' -r
complete -c switchyard -n "__fish_switchyard_using_subcommand ctl; and __fish_seen_subcommand_from rollout" -l steps -d 'Percentages of traffic on the new pool, e.g. `5,25,50,100`' -r
complete -c switchyard -n "__fish_switchyard_using_subcommand ctl; and __fish_seen_subcommand_from rollout" -l interval -d 'How long each step is held, e.g. `10s`' -r
complete -c switchyard -n "__fish_switchyard_using_subcommand ctl; and __fish_seen_subcommand_from rollout" -l admin -d 'Admin address (host:port). A host name other than `localhost` must be in the proxy\'s `admin.allowed_hosts`' -r
complete -c switchyard -n "__fish_switchyard_using_subcommand ctl; and __fish_seen_subcommand_from rollout" -l token -d 'Bearer token for the admin API (`admin.token`)' -r
complete -c switchyard -n "__fish_switchyard_using_subcommand ctl; and __fish_seen_subcommand_from rollout" -l if-revision -d 'In a fleet: refuse the change (409) if what it touches changed after this etcd revision (the `revision` of `GET /cluster` or of an earlier answer)' -r
complete -c switchyard -n "__fish_switchyard_using_subcommand ctl; and __fish_seen_subcommand_from rollout" -l abort -d 'Stop the running rollout and send the route back to its old pool'
complete -c switchyard -n "__fish_switchyard_using_subcommand ctl; and __fish_seen_subcommand_from rollout" -l force -d 'Start even though the new pool has no usable backend right now'
complete -c switchyard -n "__fish_switchyard_using_subcommand ctl; and __fish_seen_subcommand_from rollout" -l json -d 'Print the admin API\'s raw JSON answer instead of a table or a line'
complete -c switchyard -n "__fish_switchyard_using_subcommand ctl; and __fish_seen_subcommand_from rollout" -s h -l help -d 'Print help'
complete -c switchyard -n "__fish_switchyard_using_subcommand ctl; and __fish_seen_subcommand_from add-backend" -l weight -d 'Its weight' -r
complete -c switchyard -n "__fish_switchyard_using_subcommand ctl; and __fish_seen_subcommand_from add-backend" -l admin -d 'Admin address (host:port). A host name other than `localhost` must be in the proxy\'s `admin.allowed_hosts`' -r
complete -c switchyard -n "__fish_switchyard_using_subcommand ctl; and __fish_seen_subcommand_from add-backend" -l token -d 'Bearer token for the admin API (`admin.token`)' -r
complete -c switchyard -n "__fish_switchyard_using_subcommand ctl; and __fish_seen_subcommand_from add-backend" -l if-revision -d 'In a fleet: refuse the change (409) if what it touches changed after this etcd revision (the `revision` of `GET /cluster` or of an earlier answer)' -r
complete -c switchyard -n "__fish_switchyard_using_subcommand ctl; and __fish_seen_subcommand_from add-backend" -l json -d 'Print the admin API\'s raw JSON answer instead of a table or a line'
complete -c switchyard -n "__fish_switchyard_using_subcommand ctl; and __fish_seen_subcommand_from add-backend" -s h -l help -d 'Print help'
complete -c switchyard -n "__fish_switchyard_using_subcommand ctl; and __fish_seen_subcommand_from remove-backend" -l admin -d 'Admin address (host:port). A host name other than `localhost` must be in the proxy\'s `admin.allowed_hosts`' -r
complete -c switchyard -n "__fish_switchyard_using_subcommand ctl; and __fish_seen_subcommand_from remove-backend" -l token -d 'Bearer token for the admin API (`admin.token`)' -r
complete -c switchyard -n "__fish_switchyard_using_subcommand ctl; and __fish_seen_subcommand_from remove-backend" -l if-revision -d 'In a fleet: refuse the change (409) if what it touches changed after this etcd revision (the `revision` of `GET /cluster` or of an earlier answer)' -r
complete -c switchyard -n "__fish_switchyard_using_subcommand ctl; and __fish_seen_subcommand_from remove-backend" -l json -d 'Print the admin API\'s raw JSON answer instead of a table or a line'
complete -c switchyard -n "__fish_switchyard_using_subcommand ctl; and __fish_seen_subcommand_from remove-backend" -s h -l help -d 'Print help'
complete -c switchyard -n "__fish_switchyard_using_subcommand ctl; and __fish_seen_subcommand_from help" -f -a "status" -d 'Pools, backends and routes as tables'
complete -c switchyard -n "__fish_switchyard_using_subcommand ctl; and __fish_seen_subcommand_from help" -f -a "why" -d 'Why each backend of a pool does or does not get traffic: operator, health checks, breaker, weight, or its share of recent requests and who chose it'
complete -c switchyard -n "__fish_switchyard_using_subcommand ctl; and __fish_seen_subcommand_from help" -f -a "drain" -d 'Stop sending new requests to a backend; in-flight ones finish'
complete -c switchyard -n "__fish_switchyard_using_subcommand ctl; and __fish_seen_subcommand_from help" -f -a "enable" -d 'Put a backend back into rotation'
complete -c switchyard -n "__fish_switchyard_using_subcommand ctl; and __fish_seen_subcommand_from help" -f -a "disable" -d 'Take a backend out of rotation at once'
complete -c switchyard -n "__fish_switchyard_using_subcommand ctl; and __fish_seen_subcommand_from help" -f -a "weight" -d 'Set a backend\'s weight'
complete -c switchyard -n "__fish_switchyard_using_subcommand ctl; and __fish_seen_subcommand_from help" -f -a "switch" -d 'Move a route to another pool (blue/green). Refused when the pool has no usable backend, unless `--force`'
complete -c switchyard -n "__fish_switchyard_using_subcommand ctl; and __fish_seen_subcommand_from help" -f -a "split" -d 'Split a route across pools by percentage (adding up to 100), e.g. `blue=90 green=10`. Refused when a pool given a share has no usable backend, unless `--force`'
complete -c switchyard -n "__fish_switchyard_using_subcommand ctl; and __fish_seen_subcommand_from help" -f -a "reload" -d 'Reload the config file'
complete -c switchyard -n "__fish_switchyard_using_subcommand ctl; and __fish_seen_subcommand_from help" -f -a "rollout" -d 'Move a route to another pool in guarded steps, or stop a running rollout'
complete -c switchyard -n "__fish_switchyard_using_subcommand ctl; and __fish_seen_subcommand_from help" -f -a "add-backend" -d 'Add a backend to a pool at run time'
complete -c switchyard -n "__fish_switchyard_using_subcommand ctl; and __fish_seen_subcommand_from help" -f -a "remove-backend" -d 'Drain a backend, then remove it from its pool'
complete -c switchyard -n "__fish_switchyard_using_subcommand ctl; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c switchyard -n "__fish_switchyard_using_subcommand cluster; and not __fish_seen_subcommand_from push status help" -s c -l config -d 'A config file whose `[cluster]` table says where etcd is' -r -F
complete -c switchyard -n "__fish_switchyard_using_subcommand cluster; and not __fish_seen_subcommand_from push status help" -l etcd -d 'etcd client URL (repeat for several members); default: `[cluster] etcd` of --config' -r
complete -c switchyard -n "__fish_switchyard_using_subcommand cluster; and not __fish_seen_subcommand_from push status help" -l prefix -d 'The fleet\'s key prefix; default: `[cluster] prefix` of --config' -r
complete -c switchyard -n "__fish_switchyard_using_subcommand cluster; and not __fish_seen_subcommand_from push status help" -s h -l help -d 'Print help'
complete -c switchyard -n "__fish_switchyard_using_subcommand cluster; and not __fish_seen_subcommand_from push status help" -f -a "push" -d 'Validate a config like `check`, then store it and its plugins (by digest) for every instance with `cluster.shared_config = true`'
complete -c switchyard -n "__fish_switchyard_using_subcommand cluster; and not __fish_seen_subcommand_from push status help" -f -a "status" -d 'Which instance runs which config revision; exits 1 unless every instance runs the current shared config'
complete -c switchyard -n "__fish_switchyard_using_subcommand cluster; and not __fish_seen_subcommand_from push status help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c switchyard -n "__fish_switchyard_using_subcommand cluster; and __fish_seen_subcommand_from push" -s c -l config -d 'A config file whose `[cluster]` table says where etcd is' -r -F
complete -c switchyard -n "__fish_switchyard_using_subcommand cluster; and __fish_seen_subcommand_from push" -l etcd -d 'etcd client URL (repeat for several members); default: `[cluster] etcd` of --config' -r
complete -c switchyard -n "__fish_switchyard_using_subcommand cluster; and __fish_seen_subcommand_from push" -l prefix -d 'The fleet\'s key prefix; default: `[cluster] prefix` of --config' -r
complete -c switchyard -n "__fish_switchyard_using_subcommand cluster; and __fish_seen_subcommand_from push" -s h -l help -d 'Print help'
complete -c switchyard -n "__fish_switchyard_using_subcommand cluster; and __fish_seen_subcommand_from status" -s c -l config -d 'A config file whose `[cluster]` table says where etcd is' -r -F
complete -c switchyard -n "__fish_switchyard_using_subcommand cluster; and __fish_seen_subcommand_from status" -l etcd -d 'etcd client URL (repeat for several members); default: `[cluster] etcd` of --config' -r
complete -c switchyard -n "__fish_switchyard_using_subcommand cluster; and __fish_seen_subcommand_from status" -l prefix -d 'The fleet\'s key prefix; default: `[cluster] prefix` of --config' -r
complete -c switchyard -n "__fish_switchyard_using_subcommand cluster; and __fish_seen_subcommand_from status" -l json -d 'Print the raw JSON'
complete -c switchyard -n "__fish_switchyard_using_subcommand cluster; and __fish_seen_subcommand_from status" -s h -l help -d 'Print help'
complete -c switchyard -n "__fish_switchyard_using_subcommand cluster; and __fish_seen_subcommand_from help" -f -a "push" -d 'Validate a config like `check`, then store it and its plugins (by digest) for every instance with `cluster.shared_config = true`'
complete -c switchyard -n "__fish_switchyard_using_subcommand cluster; and __fish_seen_subcommand_from help" -f -a "status" -d 'Which instance runs which config revision; exits 1 unless every instance runs the current shared config'
complete -c switchyard -n "__fish_switchyard_using_subcommand cluster; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c switchyard -n "__fish_switchyard_using_subcommand upgrade" -l admin -d 'Admin address (host:port) of the running proxy' -r
complete -c switchyard -n "__fish_switchyard_using_subcommand upgrade" -l token -d 'Bearer token for the admin API' -r
complete -c switchyard -n "__fish_switchyard_using_subcommand upgrade" -s h -l help -d 'Print help'
complete -c switchyard -n "__fish_switchyard_using_subcommand completions" -s h -l help -d 'Print help'
complete -c switchyard -n "__fish_switchyard_using_subcommand man" -s h -l help -d 'Print help'
complete -c switchyard -n "__fish_switchyard_using_subcommand demo" -l listen -d 'Traffic listener address' -r
complete -c switchyard -n "__fish_switchyard_using_subcommand demo" -l admin -d 'Admin listener address' -r
complete -c switchyard -n "__fish_switchyard_using_subcommand demo" -l log-format -d 'Log format on stderr: `text` (the default), or `json` (one object per line with `timestamp`, `level`, `target`, `message` and the event\'s fields)' -r -f -a "text\t''
json\t''"
complete -c switchyard -n "__fish_switchyard_using_subcommand demo" -l log-level -d 'Log filter, e.g. `info` (the default) or `switchyard=debug`' -r
complete -c switchyard -n "__fish_switchyard_using_subcommand demo" -l workers -d 'Threads that serve client connections, each with its own event loop (default: one per core)' -r
complete -c switchyard -n "__fish_switchyard_using_subcommand demo" -l no-access-log -d 'Do not write one access-log line per request'
complete -c switchyard -n "__fish_switchyard_using_subcommand demo" -s h -l help -d 'Print help'
complete -c switchyard -n "__fish_switchyard_using_subcommand help; and not __fish_seen_subcommand_from check plugin ctl cluster upgrade completions man demo help" -f -a "check" -d 'Validate a config file and exit (non-zero on error), like `nginx -t`'
complete -c switchyard -n "__fish_switchyard_using_subcommand help; and not __fish_seen_subcommand_from check plugin ctl cluster upgrade completions man demo help" -f -a "plugin" -d 'Write, check, run and measure WebAssembly policy plugins'
complete -c switchyard -n "__fish_switchyard_using_subcommand help; and not __fish_seen_subcommand_from check plugin ctl cluster upgrade completions man demo help" -f -a "ctl" -d 'Talk to a running proxy\'s admin API: tables and one-line answers, or the raw JSON with `--json`'
complete -c switchyard -n "__fish_switchyard_using_subcommand help; and not __fish_seen_subcommand_from check plugin ctl cluster upgrade completions man demo help" -f -a "cluster" -d 'Work with a fleet of instances coordinated through etcd (`[cluster]`)'
complete -c switchyard -n "__fish_switchyard_using_subcommand help; and not __fish_seen_subcommand_from check plugin ctl cluster upgrade completions man demo help" -f -a "upgrade" -d 'Hand a running proxy over to a new process of its binary (after a package upgrade replaced it) without refusing a connection; the old process drains'
complete -c switchyard -n "__fish_switchyard_using_subcommand help; and not __fish_seen_subcommand_from check plugin ctl cluster upgrade completions man demo help" -f -a "completions" -d 'Print a shell completion script (bash, zsh, fish, elvish, powershell)'
complete -c switchyard -n "__fish_switchyard_using_subcommand help; and not __fish_seen_subcommand_from check plugin ctl cluster upgrade completions man demo help" -f -a "man" -d 'Print the man page (roff), e.g. `switchyard man | man -l -`'
complete -c switchyard -n "__fish_switchyard_using_subcommand help; and not __fish_seen_subcommand_from check plugin ctl cluster upgrade completions man demo help" -f -a "demo" -d 'Start five named demo backends in two pools, blue (one of them flaky) and green, front them with an embedded config, and print commands to try'
complete -c switchyard -n "__fish_switchyard_using_subcommand help; and not __fish_seen_subcommand_from check plugin ctl cluster upgrade completions man demo help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c switchyard -n "__fish_switchyard_using_subcommand help; and __fish_seen_subcommand_from plugin" -f -a "new" -d 'Make a plugin crate (policy, unit tests, the SDK) that builds with `cargo build --release`, tests with `cargo test` and loads as it is'
complete -c switchyard -n "__fish_switchyard_using_subcommand help; and __fish_seen_subcommand_from plugin" -f -a "check" -d 'Report which world a component implements and which imports it gets; with `--config`, also load it and run `init` with that config'
complete -c switchyard -n "__fish_switchyard_using_subcommand help; and __fish_seen_subcommand_from plugin" -f -a "run" -d 'Call a plugin on a request and candidates (routing), a probe result (health-check) or an outcome (recovery), from flags, a JSON file or the samples of a running proxy; print each decision and its cost'
complete -c switchyard -n "__fish_switchyard_using_subcommand help; and __fish_seen_subcommand_from plugin" -f -a "bench" -d 'Measure a plugin\'s per-call cost (on the same inputs as `run`)'
complete -c switchyard -n "__fish_switchyard_using_subcommand help; and __fish_seen_subcommand_from ctl" -f -a "status" -d 'Pools, backends and routes as tables'
complete -c switchyard -n "__fish_switchyard_using_subcommand help; and __fish_seen_subcommand_from ctl" -f -a "why" -d 'Why each backend of a pool does or does not get traffic: operator, health checks, breaker, weight, or its share of recent requests and who chose it'
complete -c switchyard -n "__fish_switchyard_using_subcommand help; and __fish_seen_subcommand_from ctl" -f -a "drain" -d 'Stop sending new requests to a backend; in-flight ones finish'
complete -c switchyard -n "__fish_switchyard_using_subcommand help; and __fish_seen_subcommand_from ctl" -f -a "enable" -d 'Put a backend back into rotation'
complete -c switchyard -n "__fish_switchyard_using_subcommand help; and __fish_seen_subcommand_from ctl" -f -a "disable" -d 'Take a backend out of rotation at once'
complete -c switchyard -n "__fish_switchyard_using_subcommand help; and __fish_seen_subcommand_from ctl" -f -a "weight" -d 'Set a backend\'s weight'
complete -c switchyard -n "__fish_switchyard_using_subcommand help; and __fish_seen_subcommand_from ctl" -f -a "switch" -d 'Move a route to another pool (blue/green). Refused when the pool has no usable backend, unless `--force`'
complete -c switchyard -n "__fish_switchyard_using_subcommand help; and __fish_seen_subcommand_from ctl" -f -a "split" -d 'Split a route across pools by percentage (adding up to 100), e.g. `blue=90 green=10`. Refused when a pool given a share has no usable backend, unless `--force`'
complete -c switchyard -n "__fish_switchyard_using_subcommand help; and __fish_seen_subcommand_from ctl" -f -a "reload" -d 'Reload the config file'
complete -c switchyard -n "__fish_switchyard_using_subcommand help; and __fish_seen_subcommand_from ctl" -f -a "rollout" -d 'Move a route to another pool in guarded steps, or stop a running rollout'
complete -c switchyard -n "__fish_switchyard_using_subcommand help; and __fish_seen_subcommand_from ctl" -f -a "add-backend" -d 'Add a backend to a pool at run time'
complete -c switchyard -n "__fish_switchyard_using_subcommand help; and __fish_seen_subcommand_from ctl" -f -a "remove-backend" -d 'Drain a backend, then remove it from its pool'
complete -c switchyard -n "__fish_switchyard_using_subcommand help; and __fish_seen_subcommand_from cluster" -f -a "push" -d 'Validate a config like `check`, then store it and its plugins (by digest) for every instance with `cluster.shared_config = true`'
complete -c switchyard -n "__fish_switchyard_using_subcommand help; and __fish_seen_subcommand_from cluster" -f -a "status" -d 'Which instance runs which config revision; exits 1 unless every instance runs the current shared config'
