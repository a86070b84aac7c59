package pgwire

// Close ends the session by closing its connection. A handler calls it
// when the client's message stream is broken inside a COPY (a message over
// the size limit, a read error): no later message can be framed, so the
// session cannot go on, and the server must not wait for the rest of a
// message it refused.
func (s *Session) Close() error { return s.conn.Close() }
