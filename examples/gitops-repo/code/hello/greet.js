// Edit this file (same version) and commit: the agent hot-reloads it in place.
export function greet(name) {
  return `Hello, ${name}!`;
}
