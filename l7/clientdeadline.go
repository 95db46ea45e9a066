package l7

import "time"

// Client read deadlines are armed lazily. fasthttp moves a connection's
// read deadline twice per request (the idle wait, then header_timeout once
// the first byte is in), and each move is a runtime timer update of about
// 0.3 µs. The deadline armed on the socket is never later than the one
// fasthttp asked for: an earlier one is armed at once, a later one is not
// armed, and a read that times out at the armed deadline before the asked
// one arms that and reads again. In steady keep-alive traffic a connection
// re-arms about once per header_timeout instead of twice per request.
//
// The asked deadline is also what a parked connection expires at
// (park.go).

// SetReadDeadline notes t as the read deadline, and arms it if it comes
// before the armed one. Deadlines are kept as fasthttp gives them, with
// their monotonic clock reading: a step of the wall clock moves none.
func (c *countConn) SetReadDeadline(t time.Time) error {
	c.deadline = t
	if !c.armed.IsZero() && (t.IsZero() || !t.Before(c.armed)) {
		return nil
	}
	return c.arm()
}

// SetDeadline sets both deadlines at once, as asked.
func (c *countConn) SetDeadline(t time.Time) error {
	c.deadline, c.armed = t, t
	return c.Conn.SetDeadline(t)
}

// arm sets the socket's read deadline to the asked one.
func (c *countConn) arm() error {
	c.armed = c.deadline
	return c.Conn.SetReadDeadline(c.deadline)
}

// early reports whether err, from a read that returned nothing, is the
// armed deadline passing before the asked one; if so the asked one is
// armed and the caller reads again.
func (c *countConn) early(err error) bool {
	if c.armed.Equal(c.deadline) || !isTimeout(err) {
		return false
	}
	if !c.deadline.IsZero() && !time.Now().Before(c.deadline) {
		return false
	}
	_ = c.arm()
	return true
}

// readConn reads from the socket, past an early deadline.
func (c *countConn) readConn(p []byte) (int, error) {
	for {
		n, err := c.Conn.Read(p)
		if n == 0 && err != nil && c.early(err) {
			continue
		}
		return n, err
	}
}
