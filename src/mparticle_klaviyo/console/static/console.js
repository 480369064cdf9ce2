// The console's only script: refreshes the overview and draws its chart. No library, no build.
"use strict";

const POLL_MS = 2000;
const SVG = "http://www.w3.org/2000/svg";
const SERIES = {
  events_received: { label: "events in", css: "in" },
  klaviyo_events_delivered: { label: "events delivered", css: "out" },
  klaviyo_429: { label: "429s", css: "throttled" },
};

// A GET of the console; a session that ended sends the browser back to the login form.
async function fetchOk(url) {
  const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "*/*" } });
  if (response.redirected || response.status === 401) {
    window.location.assign("/console/login");
    return null;
  }
  return response.ok ? response : null;
}

async function refreshLive(live) {
  const response = await fetchOk(live.dataset.src);
  if (response) {
    // Server-rendered HTML of this origin, every value escaped there (see console/html.py).
    live.innerHTML = await response.text();
  }
}

function polyline(values, max, width, height, css, dashed) {
  const line = document.createElementNS(SVG, "polyline");
  const step = values.length > 1 ? width / (values.length - 1) : width;
  const points = values.map((v, i) => `${(i * step).toFixed(1)},${(height - (v / max) * (height - 10)).toFixed(1)}`);
  line.setAttribute("points", points.join(" "));
  line.setAttribute("class", `series ${css}${dashed ? " dashed" : ""}`);
  return line;
}

async function refreshChart(chart) {
  const response = await fetchOk(chart.dataset.src);
  if (!response) {
    return;
  }
  const data = await response.json();
  const names = Object.keys(data.connections);
  let max = 1;
  for (const name of names) {
    for (const key of Object.keys(SERIES)) {
      max = Math.max(max, ...data.connections[name][key]);
    }
  }
  chart.replaceChildren();
  names.forEach((name, index) => {
    for (const [key, series] of Object.entries(SERIES)) {
      chart.appendChild(polyline(data.connections[name][key], max, 800, 200, series.css, index > 0));
    }
  });
  const legend = document.getElementById("legend");
  const seconds = Math.round(data.times.length * data.every_s);
  const span = seconds < 120 ? `${seconds} s` : `${Math.round(seconds / 60)} min`;
  legend.textContent =
    `${Object.values(SERIES).map((s) => s.label).join(", ")} per second over the last ${span}` +
    ` (top: ${max.toFixed(1)}/s; ${names.join(", ")}${names.length > 1 ? ": later connections dashed" : ""})`;
}

function poll(task) {
  let running = false;
  const tick = async () => {
    if (running || document.hidden) {
      return;
    }
    running = true;
    try {
      await task();
    } catch (error) {
      // The service restarting: the next tick tries again; nothing for the page's console.
    } finally {
      running = false;
    }
  };
  tick();
  window.setInterval(tick, POLL_MS);
}

// "Select all" for the dead-letter list.
function selectAll(box) {
  box.addEventListener("change", () => {
    for (const other of document.querySelectorAll("input[name=id][type=checkbox]")) {
      other.checked = box.checked;
    }
  });
}

document.addEventListener("DOMContentLoaded", () => {
  const live = document.getElementById("live");
  if (live) {
    poll(() => refreshLive(live));
  }
  const chart = document.getElementById("chart");
  if (chart) {
    poll(() => refreshChart(chart));
  }
  const all = document.getElementById("select-all");
  if (all) {
    selectAll(all);
  }
});

// ---- Mapping playground: load a batch file into the paste box (issue 12) ----
// Read in the browser, so the server maps an upload exactly as a paste, under the same byte budget
// (it checks that again). Nothing leaves the page until the operator presses Map.

// "1,048,577 bytes", as the server's refusal says it.
function byteCount(bytes) {
  return `${bytes.toLocaleString("en-US")} bytes`;
}

function loadBatchFile(picker) {
  const status = document.getElementById("file-status");
  const box = document.getElementById("batch");
  const source = document.getElementById("source");
  const limit = Number(picker.dataset.maxBytes);
  picker.addEventListener("change", () => {
    const file = picker.files && picker.files[0];
    if (!file) {
      return;
    }
    if (file.size > limit) {
      status.textContent = `${file.name} is ${byteCount(file.size)}: the playground maps at most ${byteCount(limit)}.`;
      status.className = "error";
      picker.value = "";
      return;
    }
    const reader = new FileReader();
    reader.addEventListener("load", () => {
      box.value = reader.result;
      source.value = file.name;
      status.textContent = `Loaded ${file.name} (${file.size} bytes): press Map.`;
      status.className = "muted";
    });
    reader.addEventListener("error", () => {
      status.textContent = `${file.name} could not be read.`;
      status.className = "error";
    });
    reader.readAsText(file);
  });
  // A paste after a load is no longer that file: its errors are located in "pasted".
  box.addEventListener("input", () => {
    source.value = "";
  });
}

document.addEventListener("DOMContentLoaded", () => {
  const picker = document.getElementById("batch-file");
  if (picker) {
    loadBatchFile(picker);
  }
});

// ---- Live stream (console/live_pages.py) -------------------------------------------------------
// Refreshes the list of recent batches and requests; holds still while paused or while the
// keyboard is inside the list, so that a focused link is not replaced under the operator.
async function refreshStream(stream, pause) {
  if (pause.checked || stream.contains(document.activeElement)) {
    return;
  }
  const response = await fetchOk(stream.dataset.src);
  if (response) {
    // Server-rendered HTML of this origin, every value escaped there (see console/html.py).
    stream.innerHTML = await response.text();
  }
}

document.addEventListener("DOMContentLoaded", () => {
  const stream = document.getElementById("live-stream");
  const pause = document.getElementById("live-pause");
  if (stream && pause) {
    poll(() => refreshStream(stream, pause));
  }
});
