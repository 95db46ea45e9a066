package main

import (
	"slices"
	"testing"
)

func TestSysmonEnv(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  []string
		want []string // nil: no exec
	}{
		{"no GODEBUG", []string{"A=1"}, []string{"A=1", "GODEBUG=" + sysmonSetting}},
		{"empty GODEBUG", []string{"GODEBUG=", "A=1"}, []string{"GODEBUG=" + sysmonSetting, "A=1"}},
		{"other settings", []string{"GODEBUG=gctrace=1"}, []string{"GODEBUG=gctrace=1," + sysmonSetting}},
		{"schedtrace set", []string{"GODEBUG=gctrace=1,schedtrace=0"}, nil},
		{"schedtrace set first", []string{"GODEBUG=schedtrace=1000"}, nil},
		{"only the first GODEBUG counts", []string{"GODEBUG=x=1", "GODEBUG=schedtrace=0"},
			[]string{"GODEBUG=x=1," + sysmonSetting, "GODEBUG=schedtrace=0"}},
		{"scheddetail is not schedtrace", []string{"GODEBUG=scheddetail=1"}, []string{"GODEBUG=scheddetail=1," + sysmonSetting}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := slices.Clone(tc.env)
			got, ok := sysmonEnv(in)
			if !slices.Equal(in, tc.env) {
				t.Errorf("sysmonEnv changed its argument to %q", in)
			}
			if tc.want == nil {
				if ok || !slices.Equal(got, tc.env) {
					t.Errorf("got %q, %v; want the env unchanged and false", got, ok)
				}
				return
			}
			if !ok || !slices.Equal(got, tc.want) {
				t.Errorf("got %q, %v; want %q, true", got, ok, tc.want)
			}
		})
	}
}
