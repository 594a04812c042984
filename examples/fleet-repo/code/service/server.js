// One fetch app for every service of the example: it answers with what the agent gave it, so
// `curl` shows which version and which env (overrides applied) each host runs.
export default {
  fetch(request, ctx) {
    if (new URL(request.url).pathname === "/health") return new Response("ok");
    return Response.json({ app: ctx.name, version: ctx.version, env: ctx.env });
  },
};
