// Package fleet decides how a new revision of a stack spreads over a fleet
// of hosts that read one repository and never talk to each other.
//
// # The rollout
//
// fleet.yaml at the repository root sets the rollout of every stack; a
// stack's x-gitopsd.rollout replaces it whole, with the same schema:
//
//	rollout:
//	  waves:
//	    - {name: canary, hosts: {labels: {ring: canary}}}   # or {names: ["edge-0*"]}
//	    - {name: early, percent: 10}
//	    - {name: rest}
//	  soak: 15m
//	  gate:
//	    prometheus: {url: http://prometheus:9090}
//	    healthy: 100%
//	    on_error: hold
//
// Load and ForStack read it strictly: an unknown or duplicate key, a bad
// duration or percent, a wave with two selectors (hosts and percent, or
// labels and names), two waves of one name, a wave after the catch-all,
// percents that do not increase, a gate without a URL: each is an *Error
// naming the file, line and key (fleet.yaml:7: rollout.waves.1.percent:
// ...). No fleet.yaml is no rollout: every host applies at once.
//
// # Choosing the wave
//
// WaveOf puts a host in the first wave whose selector matches it:
//   - hosts.labels: every label given has that value on the host;
//   - hosts.names: a glob (path.Match) matches the host name;
//   - percent: p: the host name's Bucket, FNV-1a of the name alone on
//     [0, 100), is below p. The stack is not hashed in, so the same hosts
//     go early for every stack (canaries one can watch), and the bucket
//     never changes. Percents are cumulative thresholds on that one scale:
//     percent: 10 then percent: 30 is about 10 % of the hosts that reach
//     the first, then the next 20 % — whatever earlier label or name waves
//     took, since the bucket does not depend on labels;
//   - no selector: the catch-all, which must be the last wave.
//
// A host that no wave selects (a file without a catch-all) is in an
// implicit wave after the last, named "(rest)": it is never left out, it
// goes last. Every host computes its wave alone and the same way.
//
// # May this host apply revision R now?
//
// Decide is a pure function of values (Input): the rollout, this host's
// wave, R and its committer time, a clock reading, and the gate's
// Observation. Wave 0 always may. A later wave k may:
//   - with a gate: once no host of an earlier wave rolled R back (else
//     Halted, "held by rollout: R rolled back on edge-03 (canary)", until
//     the next commit to the stack starts a new rollout), and Healthy of
//     the hosts of the nearest earlier wave that has hosts targeting the
//     stack have run R Synced and Healthy for Soak ("waiting: wave canary
//     1/1 healthy on R for 3m of 15m soak"). An earlier wave with no host
//     targeting the stack is skipped. If Prometheus cannot be asked, the
//     host holds (on_error: hold, "gate unreachable: ...") or applies
//     (on_error: proceed).
//   - without a gate: once k × Soak has passed since R's committer time.
//     That is a time stagger only: every host reads the same commit time,
//     so all compute the same schedule with no coordination, but nothing
//     is observed, so a rollback on a canary halts nothing. The commit
//     time is the author's clock's word (a commit dated in the future
//     delays every wave, one in the past shortens the stagger).
//
// SkipWave (`gitopsd sync STACK --skip-wave`) applies at once.
//
// # The gate's reading
//
// Observe asks Prometheus one instant query per stack and revision
// (Queries.One: the three vectors of QueriesFor, each tagged with
// label_replace and joined with or), whatever the size of the fleet, over
// the metrics each host exports for the stacks that target it
// (internal/metrics, rollout.go; the daemon computes them in
// internal/daemon/rollout.go):
//
//	gitopsd_rollout_info{stack,wave,host} 1
//	gitopsd_rollout_healthy_since_timestamp_seconds{stack,revision,wave,host}
//	gitopsd_rollout_rolled_back_info{stack,revision,wave,host} 1
//	gitopsd_rollout_held_info{stack,revision,wave,host,verdict} 1 (not read by the gate)
//
//	count by (wave) (max by (host, wave) (last_over_time(gitopsd_rollout_info{stack="web"}[1h])))
//	max by (host, wave) (gitopsd_rollout_healthy_since_timestamp_seconds{stack="web",revision="R"})
//	max by (host, wave) (gitopsd_rollout_rolled_back_info{stack="web",revision="R"})
//
// The soak is measured from the hosts' own healthy-since timestamps
// against the deciding host's clock, so it does not depend on the scrape
// interval; clocks kept by NTP differ by far less than a soak.
//
// # The fleet view
//
// view.go is what `gitopsd fleet status` and `gitopsd fleet rollout`
// show, from Prometheus alone: StatusQueries and RolloutQueries are a
// fixed handful of instant queries, and BuildStatus and BuildRollout, pure
// functions of their answers, join them into rows. The per-stack metrics
// carry no host; gitopsd_host_info{host} names the host behind each
// (job, instance), and the join is on those target labels.
package fleet
