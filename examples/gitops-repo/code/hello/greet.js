// Change this (same version), commit, push: the agent hot-reloads it in place.
export function greet(greeting, name) {
  return `${greeting}, ${name}!`;
}
