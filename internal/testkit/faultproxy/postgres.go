package faultproxy

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net"
)

// StartPostgres is Start for a PostgreSQL server: the proxy also follows the
// messages the server sends, so that it can lose the reply to a COMMIT (see
// LoseCommitReplies). An encrypted session is forwarded without being read.
func StartPostgres(target string) (*Proxy, error) {
	return start(target, true)
}

// LoseCommitReplies makes the proxy lose, from now on, the server's reply
// to each COMMIT that ends a round trip which returned at least minRows
// rows, such as a batch of creates that inserts rows and commits in one
// pipeline: the proxy drops the COMMIT's CommandComplete and closes both
// ends of the connection, as a link that breaks just after the server
// committed. The client cannot know whether its transaction was committed.
// It does nothing on a proxy not started with StartPostgres.
func (p *Proxy) LoseCommitReplies(minRows int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.loseCommits, p.loseMinRows = true, minRows
}

// KeepCommitReplies stops LoseCommitReplies.
func (p *Proxy) KeepCommitReplies() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.loseCommits = false
}

// CommitRepliesLost returns how many COMMIT replies the proxy has lost.
func (p *Proxy) CommitRepliesLost() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.commitsLost
}

// loseCommit reports whether to lose the reply to a COMMIT after rows rows,
// and counts it when so.
func (p *Proxy) loseCommit(rows int) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.loseCommits || rows < p.loseMinRows {
		return false
	}
	p.commitsLost++
	return true
}

// Backend message types the proxy reads (PostgreSQL protocol 3.0).
const (
	msgCommandComplete = 'C'
	msgDataRow         = 'D'
	msgReadyForQuery   = 'Z'
)

// commitTag is a CommandComplete's body after a COMMIT that committed.
var commitTag = []byte("COMMIT\x00")

// copyPostgres forwards the server's messages to the client like copy,
// counting the rows of each round trip (up to ReadyForQuery) so that it can
// lose a COMMIT's reply. Messages are forwarded in the chunks they arrived
// in, so that the client sees the server's own batching.
func (p *Proxy) copyPostgres(client, server net.Conn) {
	defer client.Close()
	defer server.Close()
	in := bufio.NewReaderSize(server, 32<<10)
	var out bytes.Buffer
	flush := func() bool {
		if out.Len() == 0 {
			return true
		}
		if !p.waitPass() {
			return false
		}
		_, err := client.Write(out.Bytes())
		out.Reset()
		return err == nil
	}
	if encrypted, err := p.negotiate(in, &out); err != nil || !flush() {
		return
	} else if encrypted {
		p.copy(client, readerConn{Conn: server, r: in})
		return
	}
	rows := 0
	header := make([]byte, 5)
	for {
		if in.Buffered() == 0 && !flush() {
			return
		}
		if _, err := io.ReadFull(in, header); err != nil {
			flush()
			return
		}
		size := int(binary.BigEndian.Uint32(header[1:])) - 4
		if size < 0 {
			return
		}
		body := make([]byte, size)
		if _, err := io.ReadFull(in, body); err != nil {
			return
		}
		switch header[0] {
		case msgDataRow:
			rows++
		case msgReadyForQuery:
			rows = 0
		case msgCommandComplete:
			if bytes.Equal(body, commitTag) && p.loseCommit(rows) {
				// What came before the COMMIT's reply reaches the
				// client; the reply and everything after it are lost.
				flush()
				return
			}
		}
		out.Write(header)
		out.Write(body)
	}
}

// negotiate forwards the server's one-byte answers to an SSLRequest or a
// GSSENCRequest, which come before its first message, and reports whether
// the session is encrypted from then on.
func (p *Proxy) negotiate(in *bufio.Reader, out *bytes.Buffer) (bool, error) {
	for {
		b, err := in.Peek(1)
		if err != nil {
			return false, fmt.Errorf("read: %w", err)
		}
		switch b[0] {
		case 'N': // encryption refused; a NoticeResponse never comes first
			in.ReadByte()
			out.WriteByte('N')
		case 'S', 'G':
			in.ReadByte()
			out.WriteByte(b[0])
			return true, nil
		default:
			return false, nil
		}
	}
}

// readerConn is a connection whose reads go through r, which may hold bytes
// already read from it.
type readerConn struct {
	net.Conn
	r io.Reader
}

func (c readerConn) Read(b []byte) (int, error) { return c.r.Read(b) }
