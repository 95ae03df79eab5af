// Command ollama-render prints the prompts that Ollama's POST /api/chat sends to the model, rendered by Ollama's
// own code at the release pinned in ../go.mod (the release of the operator's default Ollama image).
//
// Input on stdin, one JSON object:
//
//	{"template": "<Modelfile TEMPLATE text>", "system": "<Modelfile SYSTEM text>", "cases": [<request>...]}
//	{"modelfile": "<a whole Modelfile, as `ollama create -f` reads it>", "cases": [<request>...]}
//
// Each request is an /api/chat request body (api.ChatRequest: messages, tools, think; other fields are read and
// do not change the prompt). Output on stdout: {"prompts": ["..."]}, one prompt per case, exactly what the server
// passes to the runner for that request when the whole conversation fits in num_ctx (no truncation) and it
// carries no images. A request Ollama would refuse (tools with a template that never reads .Tools, think on a
// template with no thinking tags, no messages) is an error, as is a template Ollama would not load: a message on
// stderr and exit status 1.
//
// What the server does around the template, read in Ollama v0.12.6:
//   - `ollama create` parses the Modelfile with parser.ParseFile and sends Modelfile.CreateRequest's template,
//     system and messages (cmd/cmd.go CreateHandler); the server stores them unchanged (server/create.go
//     setTemplate, setSystem, setMessages) and parses the template with template.Parse when it loads the model
//     (server/images.go GetModel).
//   - ChatHandler (server/routes.go:1970-1973) puts the Modelfile's MESSAGE lines before the request's messages,
//     and the Modelfile's SYSTEM as a system message in front of both when it is set and the request's first
//     message is not a system message.
//   - Tools need the template to name .Tools (server/images.go:112, Capabilities over Template.Vars; checked by
//     scheduleRunner). Thinking is on by default when thinking.InferTags finds tags around .Thinking in the
//     template (server/images.go:132-136, server/routes.go:1936-1946).
//   - chatPrompt (server/prompt.go) renders template.Values{Messages, Tools, Think, ThinkLevel, IsThinkSet} with
//     Template.Execute; with everything fitting it renders all messages once (its truncation loop ends at the
//     first message with no system messages held back).
//
// Not reproduced, because they depend on the model's GGUF or name rather than the Modelfile: the qwen3 and
// deepseek-r1 removal of <think> text from earlier assistant turns, gpt-oss's harmony parser, RENDERER/PARSER
// built-ins, and the template Ollama takes from the GGUF when the Modelfile has no TEMPLATE.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/ollama/ollama/api"
	"github.com/ollama/ollama/parser"
	"github.com/ollama/ollama/template"
	"github.com/ollama/ollama/thinking"
)

type input struct {
	Template  *string           `json:"template"`
	System    string            `json:"system"`
	Modelfile *string           `json:"modelfile"`
	Cases     []json.RawMessage `json:"cases"`
}

type output struct {
	Prompts []string `json:"prompts"`
}

// model is what the server holds for a created model and reads while answering a chat request.
type model struct {
	template *template.Template
	system   string
	messages []api.Message
}

func main() {
	if err := run(os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "ollama-render:", err)
		os.Exit(1)
	}
}

func run(r io.Reader, w io.Writer) error {
	dec := json.NewDecoder(r)
	// Our own input object is strict so that a misspelt key fails; the requests inside it are decoded as the
	// server decodes them (unknown fields ignored).
	dec.DisallowUnknownFields()
	var in input
	if err := dec.Decode(&in); err != nil {
		return fmt.Errorf("input: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("input: more than one JSON value")
	}

	m, err := load(in)
	if err != nil {
		return err
	}

	out := output{Prompts: make([]string, 0, len(in.Cases))}
	for i, raw := range in.Cases {
		var req api.ChatRequest
		if err := json.Unmarshal(raw, &req); err != nil {
			return fmt.Errorf("case %d: %w", i, err)
		}
		p, err := m.chatPrompt(req)
		if err != nil {
			return fmt.Errorf("case %d: %w", i, err)
		}
		out.Prompts = append(out.Prompts, p)
	}

	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return enc.Encode(out)
}

// load builds the model `ollama create` would register from the input.
func load(in input) (*model, error) {
	var m model
	var text string
	switch {
	case in.Modelfile != nil && (in.Template != nil || in.System != ""):
		return nil, errors.New("input: give either modelfile, or template and system")
	case in.Modelfile != nil:
		req, err := createRequest(*in.Modelfile)
		if err != nil {
			return nil, fmt.Errorf("modelfile: %w", err)
		}
		if req.Template == "" {
			return nil, errors.New("modelfile: no TEMPLATE (Ollama would take one from the GGUF, which this program does not read)")
		}
		text, m.system = req.Template, req.System
		// MESSAGE lines are stored as JSON and read back when the model loads (server/create.go setMessages,
		// server/images.go GetModel); the round trip lower-cases roles as the server's copy does.
		b, err := json.Marshal(req.Messages)
		if err != nil {
			return nil, fmt.Errorf("modelfile: %w", err)
		}
		if err := json.Unmarshal(b, &m.messages); err != nil {
			return nil, fmt.Errorf("modelfile: %w", err)
		}
	case in.Template != nil:
		if *in.Template == "" {
			return nil, errors.New("input: template is empty (Ollama would take the GGUF's chat template instead)")
		}
		text, m.system = *in.Template, in.System
	default:
		return nil, errors.New("input: no template and no modelfile")
	}

	t, err := template.Parse(text)
	if err != nil {
		return nil, fmt.Errorf("template: %w", err)
	}
	m.template = t
	return &m, nil
}

// createRequest is what `ollama create -f Modelfile` sends to the server.
func createRequest(text string) (*api.CreateRequest, error) {
	f, err := parser.ParseFile(strings.NewReader(text))
	if err != nil {
		return nil, err
	}
	// A FROM path is resolved against the Modelfile's folder and hashed when it exists there; an empty folder
	// makes it a model name, which is all the prompt needs.
	dir, err := os.MkdirTemp("", "ollama-render-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	// CreateRequest prints deprecation warnings with fmt.Printf; stdout carries only our answer.
	stdout := os.Stdout
	os.Stdout = os.Stderr
	defer func() { os.Stdout = stdout }()
	return f.CreateRequest(dir)
}

// chatPrompt is the prompt ChatHandler passes to the runner for req.
func (m *model) chatPrompt(req api.ChatRequest) (string, error) {
	if len(req.Messages) == 0 {
		return "", errors.New("no messages: Ollama answers with done_reason \"load\" and renders no prompt")
	}
	for i, msg := range req.Messages {
		if len(msg.Images) > 0 {
			return "", fmt.Errorf("message %d has images; this program renders text conversations only", i)
		}
	}

	vars, err := m.template.Vars()
	if err != nil {
		return "", fmt.Errorf("template: %w", err)
	}
	if len(req.Tools) > 0 && !slices.Contains(vars, "tools") {
		return "", errors.New("Ollama answers HTTP 400 \"<model> does not support tools\": the template never names .Tools")
	}

	think := req.Think
	open, close := thinking.InferTags(m.template.Template)
	if open != "" && close != "" {
		if think == nil {
			think = &api.ThinkValue{Value: true}
		}
	} else if think.Bool() {
		return "", errors.New("Ollama answers HTTP 400 \"<model> does not support thinking\": the template has no thinking tags")
	}
	if think.IsString() {
		return "", fmt.Errorf("Ollama answers HTTP 400: think value %q is only for models with the harmony parser", think.String())
	}

	msgs := append(slices.Clone(m.messages), req.Messages...)
	if req.Messages[0].Role != "system" && m.system != "" {
		msgs = append([]api.Message{{Role: "system", Content: m.system}}, msgs...)
	}

	var b bytes.Buffer
	values := template.Values{
		Messages:   msgs,
		Tools:      req.Tools,
		Think:      think.Bool(),
		ThinkLevel: think.String(),
		IsThinkSet: think != nil,
	}
	if err := m.template.Execute(&b, values); err != nil {
		return "", fmt.Errorf("template: %w", err)
	}
	return b.String(), nil
}
