package xmlscan

import "errors"

// Condition returns the RFC 6120 stream error condition (4.9.3) for an
// error of the scanner, with a text for the peer where the condition
// alone does not say what went wrong, and ok false for any other error
// (a closed connection, a timeout: the caller decides). Client streams,
// server-to-server streams and component streams answer alike.
func Condition(err error) (cond, text string, ok bool) {
	switch {
	case errors.Is(err, ErrNotWellFormed):
		return "not-well-formed", "", true
	case errors.Is(err, ErrRestrictedXML):
		return "restricted-xml", "", true
	case errors.Is(err, ErrTooLarge):
		return "policy-violation", "stanza too large", true
	case errors.Is(err, ErrTooManyAttrs):
		return "policy-violation", "too many attributes", true
	case errors.Is(err, ErrNestedStream):
		// Well-formed so far, but a stream header inside the stream
		// breaks RFC 6120's stream structure (4.9.3.11).
		return "invalid-xml", "stream header inside the stream", true
	case errors.Is(err, ErrBadPrefix):
		return "bad-namespace-prefix", "", true
	case errors.Is(err, ErrUnsupportedEncoding):
		return "unsupported-encoding", "", true
	case errors.Is(err, ErrBadStreamHeader):
		return "invalid-namespace", "", true
	}
	return "", "", false
}
