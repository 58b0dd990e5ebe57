package stanza_test

import (
	"errors"
	"fmt"

	"github.com/treff-im/treff/stanza"
)

func ExampleError() {
	err := fmt.Errorf("lookup: %w", stanza.ItemNotFound.WithText("no such node"))
	fmt.Println(errors.Is(err, stanza.ItemNotFound))
	e, _ := stanza.FromError(err)
	fmt.Println(string(e.AppendXML(nil)))
	// Output:
	// true
	// <error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/><text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'>no such node</text></error>
}

func ExampleChildren() {
	raw := `<message type='chat'><body>hi</body><x:c xmlns:x='urn:x' ver='1'/></message>`
	for c := range stanza.Children(raw, stanza.NSClient) {
		ver, _ := c.Attr("ver")
		fmt.Printf("%s %s %q %q\n", c.Name.Space, c.Name.Local, c.Text(), ver)
	}
	// Output:
	// jabber:client body "hi" ""
	// urn:x c "" "1"
}
