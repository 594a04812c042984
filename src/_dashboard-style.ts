/**
 * The dashboard's stylesheet (inlined into the page by `dashboard.ts`, allowed by its hash in the
 * page's Content-Security-Policy). System fonts only; light and dark; one column on a phone.
 * Status is always a word: colour only repeats it.
 */
export const DASHBOARD_STYLE = String.raw`
:root {
  color-scheme: light dark;
  --bg: #f6f7f9; --fg: #1b1f24; --muted: #59636e; --card: #ffffff; --line: #d5dae0;
  --ok: #1a7f37; --warn: #9a6700; --bad: #cf222e; --info: #0969da; --focus: #0969da;
  font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
  font-size: 15px; line-height: 1.45;
}
@media (prefers-color-scheme: dark) {
  :root {
    --bg: #0d1117; --fg: #e6edf3; --muted: #9198a1; --card: #161b22; --line: #30363d;
    --ok: #3fb950; --warn: #d29922; --bad: #f85149; --info: #58a6ff; --focus: #58a6ff;
  }
}
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--fg); }
a { color: var(--info); }
:focus-visible { outline: 3px solid var(--focus); outline-offset: 2px; }
.skip { position: absolute; left: -999px; }
.skip:focus { left: 1rem; top: 1rem; background: var(--card); padding: .5rem; z-index: 10; }
header.bar {
  display: flex; flex-wrap: wrap; align-items: center; gap: .5rem 1rem;
  padding: .75rem 1rem; background: var(--card); border-bottom: 1px solid var(--line);
}
header.bar h1 { font-size: 1.15rem; margin: 0; }
.agent { display: flex; flex-wrap: wrap; gap: .25rem 1rem; margin: 0; flex: 1 1 24rem; }
.agent div { display: flex; gap: .35rem; align-items: baseline; }
.agent dt { color: var(--muted); font-size: .85rem; }
.agent dd { margin: 0; overflow-wrap: anywhere; }
.live { font-size: .85rem; color: var(--muted); }
.live::before { content: ""; display: inline-block; width: .6em; height: .6em; border-radius: 50%;
  margin-right: .35em; border: 2px solid var(--bad); vertical-align: baseline; }
.live[data-live="yes"]::before { background: var(--ok); border-color: var(--ok); }
button {
  font: inherit; padding: .4rem .8rem; border-radius: 6px; border: 1px solid var(--line);
  background: var(--bg); color: var(--fg); cursor: pointer; min-height: 2.25rem;
}
button:hover { border-color: var(--muted); }
button[disabled] { opacity: .6; cursor: progress; }
button.primary { background: var(--info); border-color: var(--info); color: #fff; }
main { padding: 1rem; max-width: 90rem; margin: 0 auto; }
.notice { min-height: 1.5rem; margin: 0 0 .75rem; }
.notice[data-kind="error"] { color: var(--bad); }
.errors { margin: 0 0 1rem; padding: .5rem 1rem; border: 1px solid var(--bad); border-radius: 8px; background: var(--card); }
.errors h2 { font-size: 1rem; margin: .25rem 0; }
.errors ul { margin: .25rem 0; padding-left: 1.25rem; }
.apps { list-style: none; margin: 0; padding: 0; display: grid; gap: 1rem;
  grid-template-columns: repeat(auto-fill, minmax(min(100%, 24rem), 1fr)); }
.app { background: var(--card); border: 1px solid var(--line); border-left-width: 6px; border-radius: 8px; padding: .75rem 1rem; min-width: 0; }
.app[data-tone="ok"] { border-left-color: var(--ok); }
.app[data-tone="warn"] { border-left-color: var(--warn); }
.app[data-tone="bad"] { border-left-color: var(--bad); }
.app-head { display: flex; align-items: center; gap: .75rem; }
.app-head h2 { font-size: 1.1rem; margin: 0; overflow-wrap: anywhere; }
.icon { width: 40px; height: 40px; border-radius: 6px; flex: none; background: var(--bg); display: grid;
  place-items: center; font-weight: 700; color: var(--muted); }
.version { color: var(--muted); }
.description { margin: .35rem 0 0; color: var(--muted); }
.word { font-weight: 600; }
.word[data-tone="ok"] { color: var(--ok); }
.word[data-tone="warn"] { color: var(--warn); }
.word[data-tone="bad"] { color: var(--bad); }
.facts { display: grid; grid-template-columns: max-content 1fr; gap: .1rem .75rem; margin: .6rem 0; }
.facts dt { color: var(--muted); }
.facts dd { margin: 0; overflow-wrap: anywhere; }
.why { margin: .4rem 0; padding: .4rem .6rem; border-radius: 6px; background: var(--bg); overflow-wrap: anywhere; }
.why[data-kind="error"] { border-left: 3px solid var(--bad); }
.why[data-kind="wait"] { border-left: 3px solid var(--warn); }
.actions { display: flex; flex-wrap: wrap; gap: .5rem; margin: .5rem 0; }
details { margin-top: .5rem; }
summary { cursor: pointer; padding: .25rem 0; }
details h3 { font-size: .95rem; margin: .5rem 0 .25rem; }
.events { list-style: none; margin: 0; padding: 0; font-size: .85rem; max-height: 14rem; overflow: auto; }
.events li { padding: .15rem 0; border-bottom: 1px solid var(--line); overflow-wrap: anywhere; }
.events time { color: var(--muted); margin-right: .4rem; }
pre.log { margin: 0; padding: .5rem; background: var(--bg); border-radius: 6px; font-size: .8rem;
  max-height: 18rem; overflow: auto; white-space: pre-wrap; overflow-wrap: anywhere; }
.empty { color: var(--muted); }
footer.foot { padding: 1rem; text-align: center; font-size: .85rem; }
dialog { border: 1px solid var(--line); border-radius: 8px; background: var(--card); color: var(--fg); max-width: min(28rem, 92vw); }
dialog::backdrop { background: rgba(0, 0, 0, .45); }
dialog label { display: block; margin: .5rem 0 .25rem; }
dialog input { font: inherit; width: 100%; padding: .4rem; border-radius: 6px; border: 1px solid var(--line); background: var(--bg); color: var(--fg); }
dialog .actions { justify-content: flex-end; }
@media (max-width: 40rem) {
  header.bar { padding: .5rem .75rem; }
  main { padding: .75rem; }
  .agent { flex-basis: 100%; }
}
`;
