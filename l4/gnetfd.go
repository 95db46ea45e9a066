package l4

import (
	"fmt"
	"net"
	"runtime/debug"
	"sync"
	"unsafe"

	"github.com/panjf2000/gnet/v2"
	"golang.org/x/sys/unix"
)

// gnet's public API hands a socket to an event loop only through Enroll,
// which needs a net.Conn with a peer address (so not a connecting socket)
// and runs on a worker goroutine: a goroutine wakeup, a dup, the Go poller's
// registration and close, and a wakeup of the loop for every backend
// connection. gnet's own accept path does it in two calls on the loop:
// newStreamConn, then (*eventloop).register0, which adds the socket to the
// loop's epoll set and runs OnOpen at once. registerFD makes the same two
// calls (and SetContext in between, so that OnOpen finds its leg), through
// the linker, for exactly the gnet version below. With any other version,
// or an event loop that is not gnet's (a test's fake), loopPointer is nil:
// backends are then dialed, and parked sockets resumed, with Enroll.

// gnetVersion is the gnet release whose internals the three declarations
// below match. go.mod pins it; a new one must be checked by hand (their
// signatures in eventloop_unix.go and connection_unix.go) before it is
// written here.
const gnetVersion = "v2.9.7"

//go:linkname gnetNewStreamConn github.com/panjf2000/gnet/v2.newStreamConn
func gnetNewStreamConn(proto string, fd int, el unsafe.Pointer, sa unix.Sockaddr, localAddr, remoteAddr net.Addr) unsafe.Pointer

//go:linkname gnetRegister github.com/panjf2000/gnet/v2.(*eventloop).register0
func gnetRegister(el unsafe.Pointer, c unsafe.Pointer) error

//go:linkname gnetSetContext github.com/panjf2000/gnet/v2.(*conn).SetContext
func gnetSetContext(c unsafe.Pointer, ctx any)

// directRegister reports whether the linked gnet is gnetVersion: false
// when the build lists another version or a replacement. Test binaries
// list no dependencies; TestGnetVersion checks go.mod for them.
var directRegister = sync.OnceValue(func() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, m := range bi.Deps {
		if m.Path == gnetModule {
			return m.Replace == nil && m.Version == gnetVersion
		}
	}
	return len(bi.Deps) == 0
})

const gnetModule = "github.com/panjf2000/gnet/v2"

// loopPointer returns the *gnet.eventloop behind el, or nil when el is not
// one (a test's fake) or the linked gnet is not gnetVersion.
func loopPointer(el gnet.EventLoop) unsafe.Pointer {
	if el == nil || !directRegister() || fmt.Sprintf("%T", el) != "*gnet.eventloop" {
		return nil
	}
	return (*[2]unsafe.Pointer)(unsafe.Pointer(&el))[1]
}

// registerFD hands the socket fd to the event loop elp (from loopPointer)
// as a gnet conn whose context is ctx; remote is its peer. It must run on
// that loop, which calls OnOpen for the new conn before registerFD returns.
// On error gnet has closed fd.
func registerFD(elp unsafe.Pointer, fd int, sa unix.Sockaddr, remote net.Addr, ctx any) error {
	if elp == nil {
		return errNoDirectRegister
	}
	c := gnetNewStreamConn("tcp", fd, elp, sa, nil, remote)
	gnetSetContext(c, ctx)
	return gnetRegister(elp, c)
}
