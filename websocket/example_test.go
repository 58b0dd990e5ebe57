package websocket_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"

	"github.com/treff-im/treff"
	"github.com/treff-im/treff/auth"
	"github.com/treff-im/treff/im"
	"github.com/treff-im/treff/storage/memstore"
	"github.com/treff-im/treff/websocket"
)

// The handler serves a treff.Server's streams to web clients; mount it on
// the HTTPS server (httptest here) at /xmpp-websocket, next to whatever
// else the site serves. A request that is not a WebSocket upgrade gets
// 426 Upgrade Required.
func ExampleHandler() {
	store := memstore.New()
	srv := &treff.Server{
		Hosts:         []treff.Host{{Domain: "example.org"}}, // add its certificate for TCP clients
		Storage:       store,
		Authenticator: &auth.Store{Accounts: store},
		Modules:       im.Modules(),
	}
	mux := http.NewServeMux()
	mux.Handle("/xmpp-websocket", &websocket.Handler{Server: srv, Origins: []string{"https://chat.example.org"}})
	hs := httptest.NewTLSServer(mux)
	defer hs.Close()

	resp, err := hs.Client().Get(hs.URL + "/xmpp-websocket")
	if err != nil {
		fmt.Println(err)
		return
	}
	resp.Body.Close()
	fmt.Println(resp.StatusCode)
	// Output: 426
}
