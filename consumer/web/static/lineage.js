/* The lineage explorer (and the small preview on artifact pages): draws the page's graph
   with cytoscape.js and dagre, left to right. Expanding a node puts it in the URL's
   `expand` list and fetches the page's JSON twin again, so the URL always reproduces
   the view; selecting two nodes highlights the path between them (`sel`). When layout
   finishes, the container gets data-node-count. */
(function () {
  "use strict";
  var el = document.getElementById("graph");
  if (!el) return;
  var preview = el.dataset.preview === "1";
  var start = el.dataset.start;
  var state = {
    expand: (el.dataset.expand || "").split(",").filter(Boolean),
    sel: (el.dataset.sel || "").split(",").filter(Boolean)
  };
  var panel = document.getElementById("panel");
  var current = JSON.parse(document.getElementById("graph-data").textContent);
  var cy = null;

  function title(n) {
    // a name that only repeats the type (Pusher "pusher") gives way to the short id
    var same = n.name && n.type && n.name.replace(/[_\-\s]/g, "").toLowerCase() === n.type.toLowerCase();
    return n.name && !same ? n.name : n.short;
  }

  function label(n) {
    var lines = [n.type || n.kind, title(n)];
    var hidden = (n.hidden_up || 0) + (n.hidden_down || 0);
    if (hidden) lines.push("+" + hidden + " more");
    return lines.join("\n");
  }

  function elements(graph) {
    var out = [];
    graph.nodes.forEach(function (n) {
      var cls = [n.kind, "s-" + String(n.state || "").toLowerCase()];
      if (n.id === graph.start) cls.push("centre");
      if ((n.hidden_up || 0) + (n.hidden_down || 0) > 0) cls.push("frontier");
      out.push({ group: "nodes", data: { id: n.id, label: label(n), node: n }, classes: cls.join(" ") });
    });
    graph.edges.forEach(function (e) {
      out.push({ group: "edges", data: { id: e.source + ">" + e.target + ">" + e.role, source: e.source,
                                         target: e.target, role: e.role } });
    });
    return out;
  }

  //: Below this zoom labels are unreadable (nodes are 150 px wide, text 11 px).
  var READABLE = 0.45;

  var STYLE = [
    { selector: "node", style: {
      "label": "data(label)", "text-wrap": "wrap", "text-max-width": 150, "font-size": 11,
      "text-valign": "center", "text-halign": "center", "width": 150, "height": 44, "color": "#1f2328",
      "font-family": "system-ui, -apple-system, 'Segoe UI', sans-serif", "border-width": 1,
      "min-zoomed-font-size": 7 } },
    { selector: "node.artifact", style: { "shape": "round-rectangle", "background-color": "#ddf4ff", "border-color": "#54aeff" } },
    { selector: "node.execution", style: { "shape": "rectangle", "background-color": "#f6f8fa", "border-color": "#8c959f" } },
    { selector: "node.execution.s-complete", style: { "background-color": "#dafbe1", "border-color": "#4ac26b" } },
    { selector: "node.execution.s-cached", style: { "background-color": "#e7f3ff", "border-color": "#218bff", "border-style": "dashed" } },
    { selector: "node.execution.s-failed", style: { "background-color": "#ffebe9", "border-color": "#cf222e" } },
    { selector: "node.artifact.s-deleted, node.artifact.s-abandoned", style: { "opacity": 0.55, "border-style": "dotted" } },
    { selector: "node.frontier", style: { "border-width": 2, "border-style": "double", "border-color": "#bf8700", "height": 56 } },
    { selector: "node.centre", style: { "border-width": 3, "border-color": "#0969da", "font-weight": "bold" } },
    { selector: "node:selected", style: { "border-width": 3, "border-color": "#8250df", "overlay-opacity": 0 } },
    { selector: "edge", style: { "width": 1.2, "line-color": "#8c959f", "target-arrow-color": "#8c959f",
      "target-arrow-shape": "triangle", "curve-style": "bezier", "arrow-scale": 0.8 } },
    { selector: ".dim", style: { "opacity": 0.25 } },
    { selector: "node.path", style: { "border-color": "#8250df", "border-width": 3, "opacity": 1 } },
    { selector: "edge.path", style: { "line-color": "#8250df", "target-arrow-color": "#8250df", "width": 3, "opacity": 1 } }
  ];

  function draw(graph) {
    var drawStart = performance.now();
    current = graph;
    el.dataset.ready = "0";
    if (cy) cy.destroy();
    var big = graph.nodes.length > 150;
    cy = cytoscape({
      container: el, elements: elements(graph), style: STYLE, wheelSensitivity: 0.3,
      textureOnViewport: big, hideEdgesOnViewport: big, pixelRatio: big ? 1 : "auto",
      boxSelectionEnabled: false, selectionType: "additive", minZoom: 0.05, maxZoom: 3
    });
    var layout = cy.layout({ name: "dagre", rankDir: "LR", nodeSep: 12, rankSep: 70, edgeSep: 6,
                             animate: false, fit: true, padding: 20 });
    layout.on("layoutstop", function () {
      if (cy.zoom() > 1.2) { cy.zoom(1.2); cy.center(); }
      if (cy.zoom() < READABLE) {  // a whole large graph would be dots: show the centre readable, pan for the rest
        var centre = cy.getElementById(graph.start);
        cy.zoom(0.8);
        cy.center(centre.length ? centre : undefined);
        if (centre.length) cy.panBy({ x: -(centre.renderedPosition().x - 120), y: 0 });
      }
      state.sel.forEach(function (id) { var n = cy.getElementById(id); if (n.length) n.select(); });
      highlight();
      el.dataset.nodeCount = String(cy.nodes().length);
      el.dataset.edgeCount = String(cy.edges().length);
      el.dataset.layoutMs = String(Math.round(performance.now() - began));
      el.dataset.readyMs = String(Math.round(performance.now()));  // since the page's navigation began
      el.dataset.ready = "1";
    });
    cy.on("tap", "node", function (evt) { preview ? go(evt.target.id()) : choose(evt.target.id()); });
    cy.on("dbltap", "node", function (evt) { if (!preview) expand(evt.target.id()); });
    cy.on("tap", function (evt) { if (evt.target === cy && !preview) { state.sel = []; cy.nodes().unselect(); highlight(); show(null); sync(false); } });
    var began = performance.now();
    layout.run();
    window.mtLineage.cy = cy;
    var summary = document.getElementById("graph-summary");
    if (summary) summary.textContent = graph.nodes.length + " nodes, " + graph.edges.length + " edges" +
      (graph.truncated ? ", more beyond (+N on the nodes)" : "");
    if (state.sel.length) show(state.sel[state.sel.length - 1]);
  }

  function go(id) { window.location.href = "/lineage/" + encodeURIComponent(id); }

  function query() {
    var p = new URLSearchParams(window.location.search);
    ["expand", "sel"].forEach(function (k) { if (state[k].length) p.set(k, state[k].join(",")); else p.delete(k); });
    return p.toString();
  }

  function sync(push) {
    var url = window.location.pathname + (query() ? "?" + query() : "");
    if (push) history.pushState(null, "", url); else history.replaceState(null, "", url);
    var form = document.getElementById("controls");
    ["expand", "sel"].forEach(function (k) {
      var input = form && form.querySelector("input[name=" + k + "]");
      if (!form) return;
      if (!input) { input = document.createElement("input"); input.type = "hidden"; input.name = k; form.appendChild(input); }
      input.value = state[k].join(",");
    });
  }

  function reload() {
    var q = query();
    return fetch(window.location.pathname + ".json" + (q ? "?" + q : ""), { credentials: "same-origin" })
      .then(function (r) {
        if (!r.ok) return r.json().then(function (b) { throw new Error(b.error ? b.error.message : r.statusText); });
        return r.json();
      })
      .then(function (page) { draw(page.graph); })
      .catch(function (err) { if (panel) panel.innerHTML = '<p class="error-line"></p>'; if (panel) panel.firstChild.textContent = String(err.message || err); });
  }

  function expand(id) {
    if (state.expand.indexOf(id) < 0) state.expand.push(id);
    sync(true);
    return reload();
  }

  function choose(id) {
    var at = state.sel.indexOf(id);
    if (at >= 0) state.sel.splice(at, 1); else state.sel.push(id);
    if (state.sel.length > 2) state.sel = state.sel.slice(-2);
    cy.nodes().unselect();
    state.sel.forEach(function (s) { cy.getElementById(s).select(); });
    highlight();
    show(at >= 0 ? null : id);
    sync(false);
  }

  function highlight() {
    cy.elements().removeClass("path dim");
    if (state.sel.length !== 2) return;
    var a = cy.getElementById(state.sel[0]), b = cy.getElementById(state.sel[1]);
    if (!a.length || !b.length) return;
    var found = cy.elements().aStar({ root: a, goal: b, directed: true });
    if (!found.found) found = cy.elements().aStar({ root: b, goal: a, directed: true });
    if (!found.found) found = cy.elements().aStar({ root: a, goal: b, directed: false });
    if (!found.found) return;
    cy.elements().addClass("dim");
    found.path.removeClass("dim").addClass("path");
  }

  function text(tag, value, cls) {
    var node = document.createElement(tag);
    node.textContent = value;
    if (cls) node.className = cls;
    return node;
  }

  function show(id) {
    if (!panel) return;
    panel.innerHTML = "";
    var n = id && cy.getElementById(id).length ? cy.getElementById(id).data("node") : null;
    if (!n) { panel.appendChild(text("p", "Select a node to see it here.", "dim")); return; }
    panel.appendChild(text("h2", (n.type || n.kind) + " " + title(n)));
    panel.appendChild(text("p", n.kind + (n.state ? " · " + n.state : ""), "dim"));
    panel.appendChild(text("code", n.id));
    var hidden = text("p", "Not shown: " + (n.hidden_up || 0) + " upstream, " + (n.hidden_down || 0) + " downstream");
    hidden.id = "panel-hidden";
    panel.appendChild(hidden);
    var actions = document.createElement("p");
    var btn = text("button", "Expand", "");
    btn.id = "expand-node";
    btn.disabled = !((n.hidden_up || 0) + (n.hidden_down || 0));
    btn.addEventListener("click", function () { expand(n.id); });
    actions.appendChild(btn);
    panel.appendChild(actions);
    var links = document.createElement("p");
    var page = text("a", "Open page"); page.href = "/" + n.kind + "s/" + n.id; links.appendChild(page);
    links.appendChild(document.createTextNode(" · "));
    var centre = text("a", "Centre here"); centre.href = "/lineage/" + n.id; links.appendChild(centre);
    panel.appendChild(links);
    if (state.sel.length === 2) panel.appendChild(text("p", "Path between the two selected nodes highlighted.", "dim"));
  }

  window.mtLineage = { cy: null, expand: expand, choose: choose, state: state };
  window.addEventListener("popstate", function () {
    var p = new URLSearchParams(window.location.search);
    state.expand = (p.get("expand") || "").split(",").filter(Boolean);
    state.sel = (p.get("sel") || "").split(",").filter(Boolean);
    reload();
  });
  draw(current);
})();
