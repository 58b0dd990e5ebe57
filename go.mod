module github.com/treff-im/treff

go 1.26.8

require (
	golang.org/x/text v0.43.0
	mellium.im/sasl v0.3.2
	mellium.im/xmpp v0.23.0
)

require (
	golang.org/x/crypto v0.58.0 // indirect
	golang.org/x/net v0.62.0 // indirect
	mellium.im/reader v0.1.0 // indirect
	mellium.im/xmlstream v0.15.4 // indirect
)
