package treff

import "testing"

func TestPresencePriority(t *testing.T) {
	for in, want := range map[string]int{
		`<presence/>`: 0,
		`<presence><priority>5</priority></presence>`:                                               5,
		`<presence><priority xmlns='jabber:client'>-1</priority></presence>`:                        -1,
		`<presence><priority >-1</priority></presence>`:                                             -1,
		`<presence><priority>&#45;1</priority></presence>`:                                          -1,
		`<presence><priority> 300 </priority></presence>`:                                           127,
		`<presence><priority>-300</priority></presence>`:                                            -128,
		`<presence><priority>x</priority></presence>`:                                               0,
		`<presence><x xmlns='urn:x'><priority>100</priority></x><priority>-1</priority></presence>`: -1,
		`<presence><priority xmlns='urn:other'>9</priority></presence>`:                             0,
	} {
		st, err := NewStanza([]byte(in))
		if err != nil {
			t.Fatal(err)
		}
		if got := presencePriority(st); got != want {
			t.Errorf("%s: got %d, want %d", in, got, want)
		}
	}
}
