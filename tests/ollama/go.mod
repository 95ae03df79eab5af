// Ollama's own chat-prompt rendering for the tests (render/, built by scripts/ollama-render.sh), pinned to the
// release of the operator's default Ollama image (tests/ollama_template.rs checks that they agree).
module fireweave.ai/tests/ollama

go 1.26.8

require github.com/ollama/ollama v0.12.6

require (
	github.com/agnivade/levenshtein v1.1.1 // indirect
	github.com/google/uuid v1.6.0 // indirect
	golang.org/x/crypto v0.36.0 // indirect
	golang.org/x/sync v0.12.0 // indirect
	golang.org/x/sys v0.31.0 // indirect
	golang.org/x/text v0.23.0 // indirect
)
