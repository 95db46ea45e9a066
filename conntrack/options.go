package conntrack

import (
	"time"

	"github.com/VictoriaMetrics/metrics"
)

// Option configures New.
type Option func(*options)

// options is what New builds a table from; each field is set by the
// With* option of the same name.
type options struct {
	shards     int
	tick       time.Duration
	wheelSlots int
	v6Bits     int
	set        *metrics.Set
	clock      func() time.Time
}

// WithShards sets the number of shards, 1 to MaxShards. Give each event
// loop its own: the default is runtime.GOMAXPROCS(0), gnet's default
// number of loops.
func WithShards(n int) Option { return func(o *options) { o.shards = n } }

// WithTick sets the resolution of expiry: a flow expires at most one tick
// after its deadline, provided its owner sweeps every tick. At least 1ms;
// default 100ms.
func WithTick(d time.Duration) Option { return func(o *options) { o.tick = d } }

// WithWheelSlots sets the buckets of each shard's timer wheel, a power of
// two from 16 to 1<<20. A wheel turns once per slots × tick (default 1024 ×
// 100ms, about 102s); an entry with a later deadline is looked at once per
// turn until it is due. Default 1024.
func WithWheelSlots(n int) Option { return func(o *options) { o.wheelSlots = n } }

// WithClientPrefixV6 sets how much of an IPv6 client address identifies a
// client for ListenerConfig.MaxFlowsPerClient, in bits from 1 to 128.
// Default 64, the prefix one subscriber usually holds whole. IPv4 clients
// are always counted by full address.
func WithClientPrefixV6(bits int) Option { return func(o *options) { o.v6Bits = bits } }

// WithMetrics registers the table's metrics in s; by default they go to a
// set of their own that nothing exposes. One set holds the metrics of one
// table.
func WithMetrics(s *metrics.Set) Option { return func(o *options) { o.set = s } }

// WithClock replaces time.Now, for tests. Its readings must not go
// backwards.
func WithClock(now func() time.Time) Option { return func(o *options) { o.clock = now } }
