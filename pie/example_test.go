package pie_test

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/treff-im/treff/auth"
	"github.com/treff-im/treff/pie"
	"github.com/treff-im/treff/storage/memstore"
)

// Import a user as ejabberd exports it with its passwords in clear: the
// password becomes SCRAM credentials, the roster comes along.
func ExampleImport() {
	ctx := context.Background()
	store := memstore.New()
	file := `<server-data xmlns='urn:xmpp:pie:0'><host jid='example.org'>
	  <user name='alice' password='s3cret'>
	    <query xmlns='jabber:iq:roster'><item jid='bob@example.org' name='Bob' subscription='both'><group>Friends</group></item></query>
	  </user>
	</host></server-data>`
	sum, err := pie.Import(ctx, store, strings.NewReader(file), pie.Options{Domains: []string{"example.org"}})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Print(sum)
	fmt.Println((&auth.Store{Accounts: store}).CheckPassword(ctx, "alice@example.org", "s3cret") == nil)
	// Output:
	// accounts:        1 imported, 0 skipped
	// roster contacts: 1 imported, 0 skipped
	// vCards:          0 imported, 0 skipped
	// private XML:     0 imported, 0 skipped
	// PEP:             0 nodes and 0 items imported, 0 skipped
	// offline msgs:    0 imported, 0 skipped
	// rooms:           0 imported, 0 skipped
	// true
}

// Export one account (here to standard output; it holds the account's
// SCRAM keys, so keep the file private).
func ExampleExport() {
	ctx := context.Background()
	store := memstore.New()
	if err := (&auth.Store{Accounts: store}).CreateUser(ctx, "alice@example.org", "s3cret"); err != nil {
		fmt.Println(err)
		return
	}
	if err := pie.Export(ctx, store, os.Stdout, pie.Filter{User: "alice@example.org"}); err != nil {
		fmt.Println(err)
	}
}
