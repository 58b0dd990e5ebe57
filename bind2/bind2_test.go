package bind2_test

import (
	"regexp"
	"strings"
	"testing"

	"mellium.im/xmpp/jid"

	"github.com/treff-im/treff/bind2"
)

func TestResource(t *testing.T) {
	alice, bob := jid.MustParse("alice@example.org"), jid.MustParse("bob@example.org")
	const id = "d4565fa7-4d72-4749-b3d3-740edbf87770"
	r := bind2.Resource(alice, "Phone", id)
	if !regexp.MustCompile(`^Phone/[0-9a-f]{12}$`).MatchString(r) {
		t.Fatalf("Resource = %q", r)
	}
	if again := bind2.Resource(alice, "Phone", id); again != r {
		t.Errorf("not stable: %q then %q", r, again)
	}
	if strings.Contains(r, "d4565fa7") {
		t.Errorf("%q shows the user-agent id", r)
	}
	_, gen, _ := strings.Cut(r, "/")
	if other := bind2.Resource(alice, "", id); other != gen {
		t.Errorf("without a tag: %q, want %q", other, gen)
	}
	if other := bind2.Resource(bob, "Phone", id); other == r {
		t.Errorf("another account's device got the same resource %q", other)
	}
	if a, b := bind2.Resource(alice, "Phone", ""), bind2.Resource(alice, "Phone", ""); a == b || !strings.HasPrefix(a, "Phone/") {
		t.Errorf("without an id: %q and %q, want two random ones", a, b)
	}
	long := bind2.Resource(alice, strings.Repeat("ä", 40), id)
	if tag, _, _ := strings.Cut(long, "/"); tag != strings.Repeat("ä", 32) {
		t.Errorf("long tag kept as %q", tag)
	}
	// A tag that is no valid resource part is left out.
	if bad := bind2.Resource(alice, "\u0000", id); bad != gen {
		t.Errorf("invalid tag: %q, want %q", bad, gen)
	}
}
