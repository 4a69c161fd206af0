package daemon

import (
	"reflect"
	"testing"

	"github.com/gitopsd/gitopsd/internal/config"
	"github.com/gitopsd/gitopsd/internal/policy"
)

// TestHostPolicyMapsEveryKey sets each policy key of the configuration
// alone, over both presets, and checks that the policy the daemon resolves
// is the one policy.Resolve makes of the same setting: a key added to the
// configuration and forgotten in hostPolicy fails here.
func TestHostPolicyMapsEveryKey(t *testing.T) {
	list := []string{"NET_ADMIN"}
	ct, st := reflect.TypeFor[config.Policy](), reflect.TypeFor[policy.Settings]()
	if ct.NumField() != st.NumField() {
		t.Fatalf("config.Policy has %d keys, policy.Settings %d", ct.NumField(), st.NumField())
	}
	for _, preset := range []string{config.PresetDefault, config.PresetStrict} {
		base := reflect.ValueOf(policy.Resolve(policy.Settings{Preset: preset}))
		for i := range ct.NumField() {
			f := ct.Field(i)
			if f.Name == "Preset" {
				continue
			}
			var c config.Policy
			var s policy.Settings
			c.Preset, s.Preset = preset, preset
			cv, sv := reflect.ValueOf(&c).Elem().Field(i), reflect.ValueOf(&s).Elem().FieldByName(f.Name)
			if !sv.IsValid() {
				t.Fatalf("policy.Settings has no %s", f.Name)
			}
			switch f.Type.Kind() {
			case reflect.Pointer:
				// The opposite of the preset's value, so that it shows.
				v := !base.FieldByName(f.Name).Bool()
				cv.Set(reflect.ValueOf(&v))
				sv.Set(reflect.ValueOf(&v))
			case reflect.Slice:
				cv.Set(reflect.ValueOf(list))
				sv.Set(reflect.ValueOf(list))
			}
			got, want := hostPolicy(c), policy.Resolve(s)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("preset %q, key %s: hostPolicy gives\n%+v\nwant\n%+v", preset, f.Name, got, want)
			}
			if reflect.DeepEqual(got, policy.Resolve(policy.Settings{Preset: preset})) {
				t.Errorf("preset %q, key %s: setting it changes nothing", preset, f.Name)
			}
		}
	}
}
