// The latent-space explorer's script: `minivae explore` puts it inside
// explorer.html (minivae/explore.py, `write_page`), after the JSON object that
// holds the decoder's weights, the test digits and the plane.
'use strict';

// ------------------------------------------------------------ reading the data

// base64 text -> the bytes it encodes (a fresh, hence aligned, buffer)
function base64Bytes(text) {
  var binary = atob(text);
  var bytes = new Uint8Array(binary.length);
  for (var i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

// base64 of little-endian float32 -> Float64Array (every browser here is little-endian)
function base64Floats(text) {
  var bytes = base64Bytes(text);
  return Float64Array.from(new Float32Array(bytes.buffer, 0, bytes.length / 4));
}

// ------------------------------------------------------------ the decoder, in plain maths

// sigmoid(a) = 1 / (1 + e^-a), written so that e^(...) never overflows
function sigmoid(a) {
  if (a >= 0) return 1 / (1 + Math.exp(-a));
  var e = Math.exp(a);
  return e / (1 + e);
}

// softplus(a) = log(1 + e^a) = max(a, 0) + log(1 + e^-|a|), stable for any a
function softplus(a) {
  return Math.max(a, 0) + Math.log1p(Math.exp(-Math.abs(a)));
}

var ACTIVATIONS = {
  identity: function (a) { return a; },
  relu: function (a) { return a > 0 ? a : 0; },
  tanh: function (a) { return Math.tanh(a); },
  sigmoid: sigmoid,
  softplus: softplus
};

function activation(name) {
  if (!ACTIVATIONS.hasOwnProperty(name)) throw new Error('unknown activation ' + name);
  return ACTIVATIONS[name];
}

// The decoder from the JSON: each layer's W (inputs x outputs, row-major) and b as Float64Array.
function readDecoder(data) {
  var layers = data.decoder.layers.map(function (layer) {
    var W = base64Floats(layer.W), b = base64Floats(layer.b);
    var inputs = layer.shape[0], outputs = layer.shape[1];
    if (W.length !== inputs * outputs || b.length !== outputs) throw new Error('a layer does not match its shape');
    return { W: W, b: b, inputs: inputs, outputs: outputs, act: activation(layer.activation) };
  });
  var net = { layers: layers, latent: data.latent, classes: data.classes,
              output: activation(data.decoder.output) };
  if (layers[0].inputs !== data.latent + data.classes) throw new Error('the first layer does not read [z, onehot(y)]');
  return net;
}

// One layer: h' = act(h W + b), i.e. h'_k = act(b_k + sum_i h_i W_ik).
function dense(h, layer) {
  var a = Float64Array.from(layer.b);          // a = b ...
  for (var i = 0; i < layer.inputs; i++) {      // ... + h_i W_i,: for every input i
    var row = i * layer.outputs;
    for (var k = 0; k < layer.outputs; k++) a[k] += h[i] * layer.W[row + k];
  }
  return a.map(layer.act);                      // h' = act(a)
}

// decode(z, y) = output(act_L( ... act_1([z, onehot(y)] W_1 + b_1) ... W_L + b_L)):
// E[x | z] of a VAE (sigmoid of the Bernoulli logits), or an autoencoder's y(z).
function decode(net, z, y) {
  var h = new Float64Array(net.latent + net.classes);   // h = [z, onehot(y)]
  for (var j = 0; j < net.latent; j++) h[j] = z[j];
  if (net.classes > 0) h[net.latent + y] = 1;
  net.layers.forEach(function (layer) { h = dense(h, layer); });
  return h.map(net.output);
}

// ------------------------------------------------------------ small vector helpers

function dot(a, b) { var s = 0; for (var i = 0; i < a.length; i++) s += a[i] * b[i]; return s; }
function minus(a, b) { return a.map(function (ai, i) { return ai - b[i]; }); }

// the point t of the way from za to zb: a straight line, or the great circle (slerp)
function interpolate(za, zb, t, slerp) {
  if (slerp) {
    var cos = dot(za, zb) / Math.sqrt(dot(za, za) * dot(zb, zb));
    var omega = Math.acos(Math.min(1, Math.max(-1, cos)));      // the angle between za and zb
    var s = Math.sin(omega);
    if (s >= 1e-6) {   // (NaN, for a zero vector, also falls back to the line)
      var wa = Math.sin((1 - t) * omega) / s, wb = Math.sin(t * omega) / s;
      return za.map(function (a, i) { return wa * a + wb * zb[i]; });
    }
  }
  return za.map(function (a, i) { return (1 - t) * a + t * zb[i]; });
}

function median(values) {
  var v = values.slice().sort(function (a, b) { return a - b; }), m = v.length >> 1;
  return v.length % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
}

// ------------------------------------------------------------ the page

var COLOURS = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd',
               '#8c564b', '#e377c2', '#7f7f7f', '#bcbd22', '#17becf'];   // one per digit 0..9

function start() {
  var data = JSON.parse(document.getElementById('minivae-data').textContent);
  if (typeof data !== 'object' || data === null) {   // the template itself, opened unfilled
    document.getElementById('error').textContent =
      'This is the template: `minivae explore RUN` writes a page with a model in it.';
    return;
  }
  var $ = function (id) { return document.getElementById(id); };
  var net = readDecoder(data);
  var J = data.latent, C = data.classes, H = data.image_shape[0], W = data.image_shape[1];
  var n = data.test.n, labels = data.test.labels;                    // null: no labels
  function label(list, i) { return list ? list[i] : 0; }             // unlabelled: one class
  var images = base64Bytes(data.test.images);                        // (n, H*W) grey levels
  var flat = base64Floats(data.test.codes), codes = [];              // n codes of length J
  for (var i = 0; i < n; i++) codes.push(Array.from(flat.subarray(i * J, (i + 1) * J)));
  var center = data.plane.center, a0 = data.plane.axes[0], a1 = data.plane.axes[1];
  var lo = data.plane.range[0], hi = data.plane.range[1];

  // the state: the code z and (conditional models) the label y
  var z = data.has_prior ? new Array(J).fill(0) : center.slice();
  var y = 0;
  var times = [];
  var api = window.minivaeExplorer = {
    getZ: function () { return z.slice(); },
    getY: function () { return y; },
    decode: function (zArray, label) { return decode(net, zArray, label === undefined ? y : label); },
    decodeMs: null, lastDecodeMs: null, selected: null
  };

  document.title = data.title;
  $('title').textContent = data.title;
  $('output-caption').textContent = data.has_prior
    ? (C > 0 ? 'E[x | z, y]: the decoder\'s mean' : 'E[x | z]: the decoder\'s mean')
    : 'y(z): the decoder\'s reconstruction';

  // decode, keeping the time it took (the last and the median of the last 50)
  function timedDecode(zz, yy) {
    var t0 = performance.now(), x = decode(net, zz, yy), ms = performance.now() - t0;
    times.push(ms);
    if (times.length > 50) times.shift();
    api.lastDecodeMs = ms;
    api.decodeMs = median(times);
    return x;
  }

  // one canvas pixel per image pixel: grey values given as 0..255 or as pixel means y
  function draw(canvas, values, asBytes) {
    var ctx = canvas.getContext('2d'), img = ctx.createImageData(W, H);
    for (var p = 0; p < W * H; p++) {
      var g = asBytes ? values[p] : Math.round(255 * Math.min(1, Math.max(0, values[p])));
      img.data[4 * p] = img.data[4 * p + 1] = img.data[4 * p + 2] = g;
      img.data[4 * p + 3] = 255;
    }
    ctx.putImageData(img, 0, 0);
  }
  function sizeImage(canvas, cssWidth) {
    canvas.width = W; canvas.height = H;
    canvas.style.width = cssWidth + 'px'; canvas.style.height = Math.round(cssWidth * H / W) + 'px';
  }
  ['output', 'original', 'recon'].forEach(function (id, k) { sizeImage($(id), k ? 112 : 224); });

  // ---- the plane: plane coordinates (u, v) in [lo, hi]^2, v pointing up
  var plane = $('plane'), pctx = plane.getContext('2d');
  function toPx(u) { return (u - lo) / (hi - lo) * plane.width; }
  function toPy(v) { return (hi - v) / (hi - lo) * plane.height; }
  // where a code lies on the plane: ((z - c) . a0, (z - c) . a1); for J = 1, u = z_0 and
  // the dots are spread over rows by digit instead (the v axis means nothing then)
  function project(code, label) {
    if (J === 1) return [code[0] - center[0], hi - (label + 0.5) / 10 * (hi - lo)];
    var d = minus(code, center);
    return [dot(d, a0), dot(d, a1)];
  }
  // the dots: the codes of the first P test digits (P >= n, the strip's)
  var pointLabels = data.points.labels, pointCodes = base64Floats(data.points.codes), dots = [];
  for (var p = 0; p < data.points.n; p++)
    dots.push(project(Array.from(pointCodes.subarray(p * J, (p + 1) * J)), label(pointLabels, p)));
  $('plane-note').textContent = J === 1 ? 'Horizontal: z0 (one row of dots per digit).'
    : J === 2 ? 'Horizontal: z0, vertical: z1.'
    : 'The plane through the mean test code spanned by the two directions in which the test codes vary most.';
  $('legend').innerHTML = labels ? COLOURS.map(function (c, d) {
    return '<span><i style="background:' + c + '"></i>' + d + '</span>'; }).join('') : '';

  function drawPlane() {
    pctx.fillStyle = '#fff';
    pctx.fillRect(0, 0, plane.width, plane.height);
    pctx.strokeStyle = '#ddd';                                   // the axes u = 0 and v = 0
    pctx.beginPath();
    pctx.moveTo(toPx(0), 0); pctx.lineTo(toPx(0), plane.height);
    pctx.moveTo(0, toPy(0)); pctx.lineTo(plane.width, toPy(0));
    pctx.stroke();
    dots.forEach(function (uv, i) {
      pctx.fillStyle = COLOURS[label(pointLabels, i) % 10];
      pctx.beginPath();
      pctx.arc(toPx(uv[0]), toPy(uv[1]), 1.5, 0, 2 * Math.PI);
      pctx.fill();
    });
    var now = project(z, 0), x = toPx(now[0]), yy = toPy(now[1]);
    pctx.strokeStyle = '#000'; pctx.lineWidth = 2;
    pctx.beginPath();
    if (J === 1) { pctx.moveTo(x, 0); pctx.lineTo(x, plane.height); }   // z is a vertical line
    else {
      pctx.arc(x, yy, 7, 0, 2 * Math.PI);
      pctx.moveTo(x - 12, yy); pctx.lineTo(x - 4, yy); pctx.moveTo(x + 4, yy); pctx.lineTo(x + 12, yy);
      pctx.moveTo(x, yy - 12); pctx.lineTo(x, yy - 4); pctx.moveTo(x, yy + 4); pctx.lineTo(x, yy + 12);
    }
    pctx.stroke();
    pctx.lineWidth = 1;
  }

  // ---- one slider per latent dimension
  var sliders = [], valueTexts = [], lines = [];
  for (var j = 0; j < J; j++) {
    var info = data.dims ? data.dims[j] : null;
    lines.push('<div class="zrow' + (info && !info.active ? ' inactive' : '') + '"><label>z' + j + '</label>' +
      '<input type="range" class="zdim" data-dim="' + j + '" min="' + data.slider_ranges[j][0] +
      '" max="' + data.slider_ranges[j][1] + '" step="any">' + '<span class="zval"></span>' +
      (info ? '<span>' + (info.active ? 'active' : 'inactive') + ', KL ' + info.kl.toFixed(2) + ' nats</span>' : '') +
      '</div>');
  }
  $('sliders').innerHTML = lines.join('');
  Array.prototype.forEach.call(document.querySelectorAll('input.zdim'), function (slider) {
    var d = Number(slider.dataset.dim);
    sliders[d] = slider;
    valueTexts[d] = slider.parentNode.querySelector('.zval');
    slider.addEventListener('input', function () { z[d] = Number(slider.value); update(); });
  });

  // ---- redraw everything that shows z: the image, the plane, the sliders
  function update() {
    draw($('output'), timedDecode(z, y), false);
    drawPlane();
    for (var d = 0; d < J; d++) {
      if (Number(sliders[d].value) !== z[d]) sliders[d].value = z[d];
      valueTexts[d].textContent = z[d].toFixed(3);
    }
    $('timing').textContent = 'decoded in ' + api.lastDecodeMs.toFixed(2) + ' ms (median of the last ' +
      times.length + ': ' + api.decodeMs.toFixed(2) + ' ms)';
  }

  // ---- moving z with the pointer on the plane
  var zSel = null;   // z when the drag started: the coordinates off the plane stay as they were
  function planePoint(e) {
    var r = plane.getBoundingClientRect();
    var px = (e.clientX - r.left) * plane.width / r.width, py = (e.clientY - r.top) * plane.height / r.height;
    var clamp = function (t) { return Math.min(hi, Math.max(lo, t)); };
    return [clamp(lo + px / plane.width * (hi - lo)), clamp(hi - py / plane.height * (hi - lo))];
  }
  function moveTo(e) {
    var uv = planePoint(e), u = uv[0], v = uv[1];
    if (J === 1) z = [center[0] + u];
    else if (J === 2) z = center.map(function (c, k) { return c + u * a0[k] + v * a1[k]; });
    else {   // z = z_sel + (u - a0.(z_sel - c)) a0 + (v - a1.(z_sel - c)) a1
      var d = minus(zSel, center), du = u - dot(a0, d), dv = v - dot(a1, d);
      z = zSel.map(function (s, k) { return s + du * a0[k] + dv * a1[k]; });
    }
    update();
  }
  // pointer events cover mouse, pen and touch; capturing the pointer keeps a drag that
  // leaves the plane going (to the plane's edge) until the button is released
  plane.addEventListener('pointerdown', function (e) {
    zSel = z.slice();
    plane.setPointerCapture(e.pointerId);
    moveTo(e);
    e.preventDefault();
  });
  plane.addEventListener('pointermove', function (e) { if (zSel) moveTo(e); });
  ['pointerup', 'pointercancel'].forEach(function (t) {
    plane.addEventListener(t, function () { zSel = null; });
  });

  // ---- the label of a conditional model
  if (C > 0) {
    var options = [];
    for (var c = 0; c < C; c++) options.push('<option value="' + c + '">' + c + '</option>');
    $('class').innerHTML = options.join('');
    $('class-box').hidden = false;
    $('class').addEventListener('change', function () { y = Number($('class').value); update(); });
  } else $('class-box').remove();

  // ---- the strip of test digits
  var strip = $('digits');
  codes.forEach(function (code, i) {
    var canvas = document.createElement('canvas');
    canvas.className = 'digit';
    canvas.dataset.index = i;
    canvas.title = labels ? String(labels[i]) : 'test image ' + i;
    sizeImage(canvas, 2 * W);
    draw(canvas, images.subarray(i * W * H, (i + 1) * W * H), true);
    canvas.addEventListener('click', function () { select(i); });
    strip.appendChild(canvas);
  });
  function select(i) {
    z = codes[i].slice();
    if (C > 0) { y = labels[i]; $('class').value = String(y); }
    api.selected = i;
    draw($('original'), images.subarray(i * W * H, (i + 1) * W * H), true);
    draw($('recon'), timedDecode(codes[i], y), false);
    Array.prototype.forEach.call(strip.children, function (el, k) { el.classList.toggle('selected', k === i); });
    update();
  }

  // ---- interpolation between two test codes
  var pick = codes.map(function (code, i) { return '<option value="' + i + '">' + i + (labels ? ': digit ' + labels[i] : '') + '</option>'; });
  $('interp-a').innerHTML = $('interp-b').innerHTML = pick.join('');
  if (n > 1) $('interp-b').value = '1';
  function walk() {
    var za = codes[Number($('interp-a').value)], zb = codes[Number($('interp-b').value)];
    z = interpolate(za, zb, Number($('interp-t').value), $('slerp').checked);
    update();
  }
  $('interp-t').addEventListener('input', walk);
  ['interp-a', 'interp-b', 'slerp'].forEach(function (id) { $(id).addEventListener('change', walk); });

  update();   // the initial z: 0 under a prior, else the plane's centre, the mean test code
}

try { start(); } catch (err) {
  document.getElementById('error').textContent = 'The explorer could not start: ' + err.message;
  throw err;
}
