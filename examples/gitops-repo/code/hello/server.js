// A fetch app: no start/stop needed, the agent listens on env.port and calls fetch().
import { greet } from "./greet.js";

export default {
  fetch(request) {
    const url = new URL(request.url);
    if (url.pathname === "/health") return new Response("ok");
    return new Response(`${greet(url.searchParams.get("name") ?? "world")}\n`);
  },
};
