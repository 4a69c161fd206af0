package backup

import (
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"time"

	"filippo.io/age"

	"github.com/gitopsd/gitopsd/internal/backup/policy"
	"github.com/gitopsd/gitopsd/internal/stack"
)

// Consistency is how a volume is kept still while it is read.
type Consistency string

const (
	ConsistencyNone  Consistency = "none"  // read as it is
	ConsistencyStop  Consistency = "stop"  // the listed services are stopped, then started in dependency order
	ConsistencyPause Consistency = "pause" // the listed services are paused, then unpaused
	ConsistencyHook  Consistency = "hook"  // a command is exec'd in a service before and after
)

// Config is a stack's x-gitopsd.backup.
type Config struct {
	// BeforeDeploy: snapshot a volume before a deploy that changes a
	// service using it, so `rollback --with-data` can bring data back too.
	BeforeDeploy bool
	// Recipients, if any, are the age public keys snapshots are encrypted to.
	Recipients []age.Recipient
	Volumes    map[string]VolumeConfig // by compose key
}

// VolumeConfig is the backup of one volume.
type VolumeConfig struct {
	Volume      string // compose key
	Schedule    *policy.Schedule
	Keep        policy.Keep
	Consistency Consistency
	Services    []string // stopped or paused (stop, pause)
	Hook        Hook
	Test        *policy.Schedule // restore-test schedule; nil: none
	TestLevel   int              // level of scheduled restore tests: 1, 2 or 3 (default: 3 with verify, else 2)
	Verify      []string         // level 3: command run against the restored copy
	VerifyWith  string           // level 3: the service whose image and mount point are used
	Timeout     time.Duration    // level 3: how long verify may take
	// Local keeps the volume's snapshots on the host only (remote: false),
	// even with backup.remote set.
	Local bool
	// TestFrom is where scheduled restore tests take their snapshot:
	// TestFromLocal, or TestFromRemote (the newest copy on the remote,
	// downloaded: the test that proves the backup outlives the host).
	TestFrom string
	// IfEmpty (restore: if_empty): a volume that does not exist when the
	// stack is deployed is created and filled from its newest good copy,
	// local or remote, before any service starts (RestoreIfEmpty).
	IfEmpty bool
}

// Where scheduled restore tests take their snapshot from (test_from).
const (
	TestFromLocal  = "local"
	TestFromRemote = "remote"
)

// Hook is a command exec'd in a running service before and after the read.
type Hook struct {
	Service       string
	Before, After []string
}

// ParseConfig reads a stack's x-gitopsd.backup (nil when absent). Errors
// name the key: x-gitopsd.backup.volumes.data.schedule: ...
func ParseConfig(st *stack.Stack) (*Config, error) {
	raw, ok := st.Options.Raw["backup"]
	if !ok || raw == nil {
		return nil, nil
	}
	bad := func(path, format string, a ...any) error {
		return fmt.Errorf("x-gitopsd.backup%s: %s", path, fmt.Sprintf(format, a...))
	}
	m, ok := raw.(map[string]any)
	if !ok {
		return nil, bad("", "must be a mapping")
	}
	c := &Config{Volumes: map[string]VolumeConfig{}}
	for _, k := range slices.Sorted(maps.Keys(m)) {
		switch k {
		case "volumes":
		case "before_deploy":
			b, ok := m[k].(bool)
			if !ok {
				return nil, bad(".before_deploy", "must be true or false")
			}
			c.BeforeDeploy = b
		case "recipients":
			list, err := strings_(m[k])
			if err != nil {
				return nil, bad(".recipients", "%v", err)
			}
			for i, r := range list {
				rec, err := age.ParseX25519Recipient(r)
				if err != nil {
					return nil, bad(fmt.Sprintf(".recipients[%d]", i), "not an age public key (age1...): %v", err)
				}
				c.Recipients = append(c.Recipients, rec)
			}
		default:
			return nil, bad("", "unknown key %q (known: before_deploy, recipients, volumes)", k)
		}
	}
	vols, ok := m["volumes"].(map[string]any)
	if !ok {
		return nil, bad(".volumes", "must be a mapping of the stack's volumes")
	}
	for _, key := range slices.Sorted(maps.Keys(vols)) {
		path := ".volumes." + key
		if _, declared := st.Project.Volumes[key]; !declared {
			return nil, bad(path, "the stack declares no volume %q", key)
		}
		vm, ok := vols[key].(map[string]any)
		if !ok {
			return nil, bad(path, "must be a mapping")
		}
		vc, err := parseVolume(st, key, vm)
		if err != nil {
			return nil, fmt.Errorf("x-gitopsd.backup%s%w", path, err)
		}
		c.Volumes[key] = vc
	}
	return c, nil
}

// keyError is a bad key under one volume; it prints as ".key: why".
type keyError struct{ key, msg string }

func (e *keyError) Error() string { return "." + e.key + ": " + e.msg }

func parseVolume(st *stack.Stack, key string, m map[string]any) (VolumeConfig, error) {
	vc := VolumeConfig{Volume: key, Consistency: ConsistencyNone, Timeout: 5 * time.Minute, TestFrom: TestFromLocal}
	bad := func(k, format string, a ...any) error { return &keyError{k, fmt.Sprintf(format, a...)} }
	service := func(k string, v any) (string, error) {
		s, ok := v.(string)
		if !ok {
			return "", bad(k, "must be a service name")
		}
		if _, ok := st.Project.Services[s]; !ok {
			return "", bad(k, "the stack has no service %q", s)
		}
		return s, nil
	}
	for _, k := range slices.Sorted(maps.Keys(m)) {
		v := m[k]
		switch k {
		case "schedule", "test":
			s, ok := v.(string)
			if !ok {
				return vc, bad(k, "must be a cron expression or @daily, @weekly, @every 6h ...")
			}
			sched, err := policy.ParseSchedule(s)
			if err != nil {
				return vc, bad(k, "%v", err)
			}
			if k == "schedule" {
				vc.Schedule = &sched
			} else {
				vc.Test = &sched
			}
		case "keep":
			km, ok := v.(map[string]any)
			if !ok {
				return vc, bad(k, "must be a mapping of last, hourly, daily, weekly, monthly")
			}
			for _, kk := range slices.Sorted(maps.Keys(km)) {
				n, ok := km[kk].(int)
				if !ok || n < 0 {
					return vc, bad(k+"."+kk, "must be a count (0 or more)")
				}
				switch kk {
				case "last":
					vc.Keep.Last = n
				case "hourly":
					vc.Keep.Hourly = n
				case "daily":
					vc.Keep.Daily = n
				case "weekly":
					vc.Keep.Weekly = n
				case "monthly":
					vc.Keep.Monthly = n
				default:
					return vc, bad(k, "unknown key %q (known: last, hourly, daily, weekly, monthly)", kk)
				}
			}
		case "stop", "pause":
			list, err := strings_(v)
			if err != nil {
				return vc, bad(k, "%v", err)
			}
			if vc.Consistency != ConsistencyNone {
				return vc, bad(k, "only one of stop, pause and hook")
			}
			for i, s := range list {
				if _, err := service(fmt.Sprintf("%s[%d]", k, i), s); err != nil {
					return vc, err
				}
			}
			vc.Consistency, vc.Services = Consistency(k), list
		case "hook":
			hm, ok := v.(map[string]any)
			if !ok {
				return vc, bad(k, "must be a mapping of service, before, after")
			}
			if vc.Consistency != ConsistencyNone {
				return vc, bad(k, "only one of stop, pause and hook")
			}
			vc.Consistency = ConsistencyHook
			var err error
			if vc.Hook.Service, err = service(k+".service", hm["service"]); err != nil {
				return vc, err
			}
			for _, kk := range slices.Sorted(maps.Keys(hm)) {
				switch kk {
				case "service":
				case "before", "after":
					cmd, err := strings_(hm[kk])
					if err != nil {
						return vc, bad(k+"."+kk, "%v", err)
					}
					if kk == "before" {
						vc.Hook.Before = cmd
					} else {
						vc.Hook.After = cmd
					}
				default:
					return vc, bad(k, "unknown key %q (known: service, before, after)", kk)
				}
			}
		case "verify":
			cmd, err := strings_(v)
			if err != nil || len(cmd) == 0 {
				return vc, bad(k, "must be a command as a list, e.g. [\"/app\", \"check\", \"/data\"]")
			}
			vc.Verify = cmd
		case "verify_with":
			s, err := service(k, v)
			if err != nil {
				return vc, err
			}
			vc.VerifyWith = s
		case "test_level":
			n, ok := v.(int)
			if !ok || n < 1 || n > 3 {
				return vc, bad(k, "must be 1, 2 or 3")
			}
			vc.TestLevel = n
		case "timeout":
			s, _ := v.(string)
			d, err := time.ParseDuration(s)
			if err != nil || d <= 0 {
				return vc, bad(k, "must be a duration such as 30s or 5m")
			}
			vc.Timeout = d
		case "remote":
			b, ok := v.(bool)
			if !ok {
				return vc, bad(k, "must be true or false (false: keep this volume's snapshots on the host only)")
			}
			vc.Local = !b
		case "test_from":
			s, _ := v.(string)
			if s != TestFromLocal && s != TestFromRemote {
				return vc, bad(k, "must be local or remote")
			}
			vc.TestFrom = s
		case "restore":
			if v != "if_empty" {
				return vc, bad(k, "must be if_empty (fill the volume from its newest copy when it does not exist)")
			}
			vc.IfEmpty = true
		default:
			return vc, bad(k, "unknown key (known: schedule, keep, stop, pause, hook, test, test_level, test_from, verify, verify_with, timeout, remote, restore)")
		}
	}
	if len(vc.Verify) > 0 && vc.VerifyWith == "" {
		// The service that mounts the volume lends its image and mount point.
		for _, name := range st.Project.ServiceNames() {
			if MountPoint(st, name, key) != "" {
				vc.VerifyWith = name
				break
			}
		}
		if vc.VerifyWith == "" {
			return vc, bad("verify", "no service mounts volume %q: name one with verify_with", key)
		}
	}
	if vc.TestLevel == 0 {
		vc.TestLevel = 2
		if len(vc.Verify) > 0 {
			vc.TestLevel = 3
		}
	}
	if vc.TestFrom == TestFromRemote && vc.Local {
		return vc, bad("test_from", "remote needs the volume's copies on the remote (remove remote: false)")
	}
	if vc.TestLevel == 3 && len(vc.Verify) == 0 {
		return vc, bad("test_level", "3 needs verify")
	}
	return vc, nil
}

// MountPoint is where a service mounts a volume ("" when it does not).
func MountPoint(st *stack.Stack, service, volume string) string {
	svc, ok := st.Project.Services[service]
	if !ok {
		return ""
	}
	for _, v := range svc.Volumes {
		if v.Type == "volume" && v.Source == volume {
			return v.Target
		}
	}
	return ""
}

// strings_ reads a list of strings.
func strings_(v any) ([]string, error) {
	list, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("must be a list of strings")
	}
	out := make([]string, 0, len(list))
	for _, x := range list {
		s, ok := x.(string)
		if !ok {
			return nil, fmt.Errorf("must be a list of strings")
		}
		out = append(out, s)
	}
	return out, nil
}

// Validate reports a stack's bad x-gitopsd.backup as a load error naming
// the compose file, so the stack is Invalid as for any other bad key.
func Validate(st *stack.Stack) error {
	if _, err := ParseConfig(st); err != nil {
		file := "compose.yaml"
		if len(st.Files) > 0 {
			file = filepath.Base(st.Files[0])
		}
		return fmt.Errorf("stacks/%s/%s: %w", st.Name, file, err)
	}
	return nil
}
