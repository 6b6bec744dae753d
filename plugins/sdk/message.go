package sdk

import (
	"bytes"
	"io"

	"github.com/sluice-dev/sluice/plugins/sdk/abi"
)

// Message is one message of a simple-mode batch. It is reused for every
// message: do not keep it, or slices from it, past the handler call.
type Message struct {
	body    []byte
	meta    [][2][]byte
	action  abi.Action
	out     []byte
	reason  string
	setMeta [][2]string
}

// Body returns the message's bytes, aliasing the host's buffer.
func (m *Message) Body() []byte { return m.body }

// Meta returns the value of a metadata key.
func (m *Message) Meta(key string) (string, bool) {
	for _, kv := range m.meta {
		if string(kv[0]) == key {
			return string(kv[1]), true
		}
	}
	return "", false
}

// MetaKeys calls fn for each metadata key and value, in the host's order.
func (m *Message) MetaKeys(fn func(key, value []byte)) {
	for _, kv := range m.meta {
		fn(kv[0], kv[1])
	}
}

// SetBody replaces the message's bytes. b is copied into the response.
func (m *Message) SetBody(b []byte) { m.action, m.out = abi.ActionReplace, b }

// SetMeta sets a metadata key on the message.
func (m *Message) SetMeta(key, value string) { m.setMeta = append(m.setMeta, [2]string{key, value}) }

// Drop removes the message from the batch.
func (m *Message) Drop() { m.action = abi.ActionDrop }

// Fail marks the message errored with reason; it keeps its original bytes
// and goes down the pipeline's error path (catch, try, fallback).
func (m *Message) Fail(reason string) { m.action, m.reason = abi.ActionFail, reason }

func processMessages(req []byte) []byte {
	r := abi.NewReader(req)
	n := int(r.U32())
	r.U32()
	if r.Err() != nil {
		return errorResponse(abi.StatusError, errMalformed.Error()+": "+r.Err().Error())
	}
	resp.U32(uint32(abi.StatusOK))
	resp.U32(uint32(n))
	m := &message
	for i := 0; i < n; i++ {
		m.body = r.Bytes()
		m.meta = m.meta[:0]
		for k := r.U32(); k > 0 && r.Err() == nil; k-- {
			m.meta = append(m.meta, [2][]byte{r.Bytes(), r.Bytes()})
		}
		if r.Err() != nil {
			return errorResponse(abi.StatusError, errMalformed.Error()+": "+r.Err().Error())
		}
		m.action, m.out, m.reason, m.setMeta = abi.ActionKeep, nil, "", m.setMeta[:0]
		if err := msgHandler(m); err != nil {
			m.Fail(err.Error())
		}
		resp.U8(uint8(m.action))
		switch m.action {
		case abi.ActionReplace:
			resp.Bytes(m.out)
		case abi.ActionFail:
			resp.String(m.reason)
		}
		resp.U32(uint32(len(m.setMeta)))
		for _, kv := range m.setMeta {
			resp.String(kv[0])
			resp.String(kv[1])
		}
	}
	return resp.Buf
}

func bytesReader(b []byte) io.Reader { return bytes.NewReader(b) }
