package bench

import "testing"

func TestParseWrk(t *testing.T) {
	out := []byte(`Running 3s test @ http://127.0.0.1:18080/small
  1 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.04ms  302.10us   9.30ms   91.48%
  183745 requests in 3.00s, 26.11MB read
Requests/sec:  61238.69
BENCH requests=183745 duration_us=3000457 errors=2 status_errors=1 p50_us=990 p99_us=2150
`)
	got, err := ParseWrk(out)
	if err != nil {
		t.Fatal(err)
	}
	want := WrkResult{Requests: 183745, DurationUS: 3000457, Errors: 2, StatusErrors: 1, P50US: 990, P99US: 2150}
	if got != want {
		t.Errorf("got %+v; want %+v", got, want)
	}
	if _, err := ParseWrk([]byte("unable to connect to 127.0.0.1:1 Connection refused\n")); err == nil {
		t.Error("got no error without a BENCH line")
	}
	if _, err := ParseWrk([]byte("BENCH requests=1\n")); err == nil {
		t.Error("got no error for a short BENCH line")
	}
}

func TestParseRedisCSV(t *testing.T) {
	out := []byte(`"test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
"SET","52465.89","0.524","0.136","0.503","0.711","0.887","2.079"
"GET","61349.69","0.433","0.120","0.415","0.599","0.767","1.455"
`)
	got, err := ParseRedisCSV(out)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0] != (RedisResult{"SET", 52465.89, 0.503, 0.887}) || got[1].Test != "GET" || got[1].P99MS != 0.767 {
		t.Errorf("got %+v", got)
	}
	if _, err := ParseRedisCSV([]byte("Could not connect to Redis at 127.0.0.1:1: Connection refused\n")); err == nil {
		t.Error("got no error for a failed run")
	}
}

func TestParsePerfStat(t *testing.T) {
	out := []byte("123456,,raw_syscalls:sys_enter,5001234567,100.00,,\n789,,context-switches,5001234567,100.00,,\n<not counted>,,cycles,0,0.00,,\n")
	got := parsePerfStat(out)
	if got["raw_syscalls:sys_enter"] != 123456 || got["context-switches"] != 789 || len(got) != 2 {
		t.Errorf("got %v", got)
	}
}
