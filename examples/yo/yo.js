// One EventSource per page. Logged in: /events/me carries the user's own yos (event "yo") and
// the public feed ("feed", "presence-join", "presence-leave") on one connection. A visitor gets
// the feed alone.
//
// The online list is fetched once whenever the stream opens, then follows the join and leave
// events. Logging out (in any tab) closes every tab's stream: each gets "stream-closed".
//
// Every yo has its own id. Whenever the stream (re)opens, and on "stream-reset" (the server lost
// the history this page's Last-Event-ID points into, e.g. after a restart), the page fetches the
// recent yos; it shows each id once, so nothing is lost or shown twice.
const me = document.body.dataset.user || null;
const statusLine = document.getElementById("status");
const lists = { inbox: document.getElementById("inbox"), feed: document.getElementById("feed") };
const shown = { inbox: new Set(), feed: new Set() };

function show(list, yo, fresh) {
  const ul = lists[list];
  if (!ul || shown[list].has(yo.id)) return;
  shown[list].add(yo.id);
  const li = document.createElement("li");
  li.dataset.id = yo.id;
  if (fresh) li.className = "new";
  const text = document.createElement("span");
  text.textContent = `yo from ${yo.from} to ${yo.to}`;
  const time = document.createElement("time");
  time.textContent = new Date(yo.at).toLocaleTimeString();
  li.append(text, time);
  // Newest first, by id, whatever order they arrive in.
  const after = [...ul.children].find((other) => Number(other.dataset.id) < yo.id);
  ul.insertBefore(li, after || null);
}

async function catchUp() {
  try {
    const response = await fetch("/api/yos");
    const recent = await response.json();
    recent.inbox.forEach((yo) => show("inbox", yo, false));
    recent.feed.forEach((yo) => show("feed", yo, false));
    // Counted, so a test can tell when a catch-up has happened.
    document.body.dataset.caughtUp = Number(document.body.dataset.caughtUp || 0) + 1;
  } catch (e) {
    // The server is away; the next open tries again.
  }
}

const online = new Set();
// Join and leave events that arrive while the list is being fetched, applied after it.
let arrivedMeanwhile = null;

function showOnline() {
  const box = document.getElementById("online");
  if (!box) return;
  box.replaceChildren(...[...online].filter((name) => name !== me).sort().map((name) => {
    const button = document.createElement("button");
    button.dataset.to = name;
    button.textContent = `yo ${name}`;
    button.onclick = () => sendYo(name);
    return button;
  }));
}

function joinOrLeave(event) {
  if (arrivedMeanwhile) arrivedMeanwhile.push(event);
  const user = JSON.parse(event.data).user;
  if (event.type === "presence-join") online.add(user);
  else online.delete(user);
  showOnline();
}

async function refreshOnline() {
  if (!document.getElementById("online")) return;
  arrivedMeanwhile = [];
  try {
    const present = await (await fetch("/api/online")).json();
    const meanwhile = arrivedMeanwhile;
    arrivedMeanwhile = null;
    online.clear();
    present.forEach(({ user }) => online.add(user));
    meanwhile.forEach(joinOrLeave);
  } catch (e) {
    // The server is away; the next open asks again.
    arrivedMeanwhile = null;
  }
  showOnline();
}

async function sendYo(to) {
  const error = document.getElementById("send-error");
  error.textContent = "";
  try {
    const response = await fetch("/api/yo", { method: "POST", body: new URLSearchParams({ to }) });
    if (!response.ok) error.textContent = await response.text();
  } catch (e) {
    error.textContent = "the server is not answering, try again";
  }
}

const source = new EventSource(me ? "/events/me" : "/events/yo");
source.addEventListener("open", () => {
  statusLine.textContent = "live";
  statusLine.className = "live";
  catchUp();
  refreshOnline();
});
source.addEventListener("error", () => {
  statusLine.textContent = source.readyState === EventSource.CLOSED ? "disconnected" : "reconnecting…";
  statusLine.className = "";
});
source.addEventListener("stream-reset", catchUp);
source.addEventListener("yo", (event) => show("inbox", JSON.parse(event.data), true));
source.addEventListener("feed", (event) => show("feed", JSON.parse(event.data), true));
source.addEventListener("presence-join", joinOrLeave);
source.addEventListener("presence-leave", joinOrLeave);
// Logged out, in this tab or another: stop here (a browser that came back would get 204).
source.addEventListener("stream-closed", () => {
  source.close();
  statusLine.textContent = "logged out";
  statusLine.className = "";
});

const form = document.getElementById("send");
if (form) {
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    sendYo(document.getElementById("to").value.trim());
    form.reset();
  });
}
