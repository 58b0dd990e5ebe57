package e2e

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/treff-im/treff/trefftest"
)

// TestCrashKeepsAcknowledged: "acknowledged means stored" (issue 15),
// tested by killing. Bob's phone has resumable stream management and
// loses its connection without closing the stream (a TCP reset), so his
// session hibernates. Alice, with stream management, sends 1,000
// messages and asks for acknowledgements every ten; the server is killed
// with SIGKILL at a random moment of that, restarted on the same data
// folder, and bob logs in again: every message alice saw acknowledged
// arrives exactly once, with a delay stamp; none arrives twice. Three
// rounds, each killed at another moment.
func TestCrashKeepsAcknowledged(t *testing.T) {
	bin := buildCommunity(t)
	data := t.TempDir()
	for _, a := range [][2]string{{"alice", "alicepw"}, {"bob", "bobpw"}} {
		runCommunity(t, bin, "adduser", "-data", data, "-password", a[1], a[0]+"@localhost")
	}
	// The offline limit is above what one round sends, so no message is
	// refused for the quota (a refused one is answered, not kept); so
	// is the message rate limit (alice sends 1000 at once).
	bin = withFlags(t, bin, "-offline-limit", "5000", "-limit-messages", "none")
	seed := rand.Uint64()
	rng := rand.New(rand.NewPCG(seed, 1))
	t.Logf("seed %d", seed)
	const total = 1000
	for round := 1; round <= 3; round++ {
		killAt := 1 + rng.IntN(total)
		acked := crashRound(t, bin, data, round, total, killAt)
		t.Logf("round %d: killed once %d messages were acknowledged; %d were by then", round, killAt, acked)
	}
}

// crashRound runs one round and returns how many messages alice saw
// acknowledged.
func crashRound(t *testing.T, bin, data string, round, total, killAt int) int {
	t.Helper()
	p := startCommunity(t, bin, data)
	ts := crashClients(t, p)

	bob := ts.Login(t, "bob", "bobpw", "phone")
	bob.Send("<enable xmlns='urn:xmpp:sm:3' resume='true'/>")
	bob.Expect(`<enabled xmlns='urn:xmpp:sm:3' id='[^']+' resume='true'`)
	bob.Send("<presence/>")
	bob.Sync()
	hibernated := strings.Count(p.logs.String(), `msg="session hibernating"`)
	reset(t, bob.Conn())
	waitLogCount(t, p, `msg="session hibernating"`, hibernated+1)

	alice := ts.Login(t, "alice", "alicepw", "desk")
	alice.Send("<enable xmlns='urn:xmpp:sm:3'/>")
	alice.Expect(`<enabled xmlns='urn:xmpp:sm:3'/>`)
	conn := alice.Conn()

	// The reader records the highest acknowledgement until the
	// connection dies with the server, and kills the server once killAt
	// messages are acknowledged: a moment while it handles the rest.
	ackRe := regexp.MustCompile(`<a xmlns='urn:xmpp:sm:3' h='(\d+)'/>`)
	acks := make(chan int, 1)
	kill := make(chan struct{})
	go func() {
		best, killed := 0, false
		var pending []byte
		buf := make([]byte, 32<<10)
		conn.SetReadDeadline(time.Now().Add(2 * time.Minute))
		for {
			n, err := conn.Read(buf)
			pending = append(pending, buf[:n]...)
			for _, m := range ackRe.FindAllSubmatch(pending, -1) {
				if h, _ := strconv.Atoi(string(m[1])); h > best {
					best = h
				}
			}
			if i := strings.LastIndex(string(pending), ">"); i >= 0 {
				pending = pending[i+1:]
			}
			if best >= killAt && !killed {
				killed = true
				close(kill)
			}
			if err != nil {
				if !killed {
					close(kill) // the test fails below: nothing to wait for
				}
				acks <- best
				return
			}
		}
	}()
	// The writer sends everything; what it writes after the kill fails.
	go func() {
		conn.SetWriteDeadline(time.Now().Add(2 * time.Minute))
		for i := 1; i <= total; i++ {
			msg := fmt.Sprintf("<message to='bob@localhost/phone' type='chat' id='r%d-%d'><body>r%d-%d</body></message>", round, i, round, i)
			if i%10 == 0 || i == total {
				msg += "<r xmlns='urn:xmpp:sm:3'/>"
			}
			if _, err := conn.Write([]byte(msg)); err != nil {
				return
			}
		}
	}()
	select {
	case <-kill:
	case <-p.done:
		t.Fatalf("round %d: the server exited before the kill: %v\nserver output:\n%s", round, p.err, p.logs)
	}
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-p.done
	acked := <-acks
	if acked < killAt {
		t.Fatalf("round %d: connection lost after %d acknowledgements, before the kill at %d", round, acked, killAt)
	}

	// Restarted on the same data: bob's next login gets what was kept.
	p = startCommunity(t, bin, data)
	ts = crashClients(t, p)
	bob = ts.Login(t, "bob", "bobpw", "laptop")
	bob.Send("<presence/>")
	got := bob.Sync()
	seen := make(map[int]int)
	bodyRe := regexp.MustCompile(`<body>r` + strconv.Itoa(round) + `-(\d+)</body>`)
	for _, m := range bodyRe.FindAllStringSubmatch(got, -1) {
		i, _ := strconv.Atoi(m[1])
		seen[i]++
	}
	for i := 1; i <= acked; i++ {
		if seen[i] != 1 {
			t.Errorf("round %d: acknowledged message %d arrived %d times (want once)", round, i, seen[i])
		}
	}
	for i, n := range seen {
		if n > 1 {
			t.Errorf("round %d: message %d arrived %d times", round, i, n)
		}
	}
	if d := strings.Count(got, "<delay xmlns='urn:xmpp:delay'"); d != len(seen) {
		t.Errorf("round %d: %d delay stamps for %d messages", round, d, len(seen))
	}
	p.stop(t)
	return acked
}

// crashClients returns a client factory for a running binary: its
// address, domain and its self-signed certificate as the only root.
func crashClients(t *testing.T, p *communityProc) *trefftest.Server {
	t.Helper()
	pem, err := os.ReadFile(p.cert)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		t.Fatalf("no certificate in %s", p.cert)
	}
	return &trefftest.Server{Domain: "localhost", Addr: p.addr, TLSAddr: p.tls, CertFile: p.cert, Roots: roots}
}

// reset drops a client's TCP connection with a reset, without closing
// its XMPP stream: to the server, a lost connection.
func reset(t *testing.T, c net.Conn) {
	t.Helper()
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	tcp, ok := c.(*net.TCPConn)
	if !ok {
		t.Fatalf("not a TCP connection: %T", c)
	}
	tcp.SetLinger(0)
	tcp.Close()
}

// waitLogCount waits until the server has logged msg n times: the event a
// test cannot see from outside (a session's hibernation).
func waitLogCount(t *testing.T, p *communityProc, msg string, n int) {
	t.Helper()
	for range 1000 {
		if strings.Count(p.logs.String(), msg) >= n {
			return
		}
		time.Sleep(10 * time.Millisecond) // the log has no notification
	}
	t.Fatalf("the server did not log %s within 10s\nserver output:\n%s", msg, p.logs)
}
