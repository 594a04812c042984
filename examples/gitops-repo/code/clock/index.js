// A lifecycle app: start() returns the instance, stop() ends it, reconfigure() takes env changes live.
export async function start(ctx) {
  const state = { ticks: 0, every: Number(ctx.env.tick_ms ?? 1000) };
  state.timer = setInterval(() => state.ticks++, state.every);
  ctx.log.info(`clock ${ctx.version} ticking every ${state.every} ms`);
  return state;
}

export async function stop(state) {
  clearInterval(state.timer);
}

export async function reconfigure(state, change, ctx) {
  if (change.changed.includes("tick_ms")) {
    clearInterval(state.timer);
    state.every = Number(change.env.tick_ms);
    state.timer = setInterval(() => state.ticks++, state.every);
    ctx.log.info(`clock now ticks every ${state.every} ms`);
  }
}

export async function health(state) {
  return state.timer !== undefined;
}
