package lb

import (
	"fmt"
	"log/slog"
	"time"
)

// Passive health checks: Lease.Release counts Failure outcomes in a row per
// backend (a Success resets the count); the release that reaches
// outlier.consecutive_failures calls eject. Ejection lasts base_ejection,
// doubled for each ejection that follows within base_ejection of the
// previous one's end, up to max_ejection; the pool's timer ends it, and the
// backend comes back through slow start. At most max_ejected_percent of the
// pool's backends (at least one) are ejected at once, so that a fault that
// fails every request (a bad deploy answering 5xx everywhere) does not empty
// the pool.

// eject takes b out of rotation after consecutive failures. It runs on the
// request path, but only on the release that reaches the threshold.
func (p *Pool) eject(b *Backend) {
	p.mu.Lock()
	defer p.mu.Unlock()
	b.hot.fails.Store(0)
	if p.closed || b.h.draining || !b.h.ejectedUntil.IsZero() || p.memberLocked(b.Name) != b {
		return
	}
	o := p.cfg.Outlier
	ejected := 0
	for _, m := range p.members {
		if !m.h.ejectedUntil.IsZero() {
			ejected++
		}
	}
	if limit := max(1, len(p.members)*o.MaxEjectedPercent/100); ejected >= limit {
		b.m.notEjected.Inc()
		if p.log.Enabled(p.ctx, slog.LevelDebug) {
			p.log.Debug("backend not ejected: max_ejected_percent reached", "pool", p.Name, "backend", b.Name, "ejected", ejected)
		}
		return
	}
	now := time.Now()
	if b.h.returned.IsZero() || now.Sub(b.h.returned) > o.BaseEjection {
		b.h.ejections = 0 // it had recovered: start the back-off over
	}
	b.h.ejections++
	d := ejectionTime(o.BaseEjection, o.MaxEjection, b.h.ejections)
	b.h.ejectedUntil = now.Add(d)
	b.h.rampFrom = time.Time{}
	b.h.reason = fmt.Sprintf("ejected for %s after %d consecutive failures (ejection %d in a row)", d, p.ejectAfter, b.h.ejections)
	b.m.ejections.Inc()
	p.rebuildAndScheduleLocked(now)
}

// ejectionTime is base × 2^(n-1), capped at max.
func ejectionTime(base, limit time.Duration, n int) time.Duration {
	d := base
	for i := 1; i < n && d < limit; i++ {
		d *= 2
	}
	return min(d, limit)
}
