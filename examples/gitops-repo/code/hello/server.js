// A fetch app: the agent listens on env.port and calls fetch(request, ctx).
import { greet } from "./greet.js";

export default {
  fetch(request, ctx) {
    const url = new URL(request.url);
    if (url.pathname === "/health") return new Response("ok");
    return new Response(greet(ctx?.env?.greeting ?? "Hello", url.searchParams.get("name") ?? "world") + "\n");
  },
};
