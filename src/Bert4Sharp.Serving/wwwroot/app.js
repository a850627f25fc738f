// The page talks to the same server's API only; no build step, no dependencies.
const $ = id => document.getElementById(id);
let controller = null;

function showError(message) { $('error').textContent = message || ''; }

async function api(path, body, signal) {
  const response = await fetch(path, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body), signal });
  if (!response.ok) {
    const error = await response.json().catch(() => ({ error: { message: response.statusText } }));
    throw new Error(`${response.status}: ${error.error.message}`);
  }
  return response;
}

function fill(select, models) {
  select.replaceChildren(...models.map(m => new Option(m.id, m.id)));
  select.closest('section').classList.toggle('unavailable', models.length === 0);
  select.closest('section').querySelectorAll('button').forEach(b => { if (b.id !== 'stop') b.disabled = models.length === 0; });
}

async function loadModels() {
  const { data } = await (await fetch('/v1/models')).json();
  $('models').textContent = data.map(m => `${m.id} (${m.kind}, ${m.engine})`).join(' · ');
  fill($('embedding-model'), data.filter(m => m.kind === 'embedding'));
  fill($('mask-model'), data.filter(m => m.fill_mask));
  fill($('generation-model'), data.filter(m => m.kind === 'generation'));
  fill($('ner-model'), data.filter(m => m.kind === 'ner'));
}

function cosine(a, b) {
  let dot = 0, na = 0, nb = 0;
  for (let i = 0; i < a.length; i++) { dot += a[i] * b[i]; na += a[i] * a[i]; nb += b[i] * b[i]; }
  return dot / Math.sqrt(na * nb);
}

$('compare').onclick = async () => {
  showError();
  const sentences = $('sentences').value.split('\n').map(s => s.trim()).filter(s => s.length > 0);
  try {
    const { data } = await (await api('/v1/embeddings', { model: $('embedding-model').value, input: sentences })).json();
    const table = document.createElement('table');
    table.id = 'similarity';
    const head = table.insertRow();
    head.insertCell().textContent = '';
    sentences.forEach((_, j) => { head.insertCell().textContent = `#${j + 1}`; });
    sentences.forEach((s, i) => {
      const row = table.insertRow();
      row.insertCell().textContent = `#${i + 1} ${s}`;
      sentences.forEach((_, j) => {
        const c = cosine(data[i].embedding, data[j].embedding);
        const cell = row.insertCell();
        cell.textContent = c.toFixed(3);
        if (i !== j && c > 0.5) cell.className = 'high';
      });
    });
    $('matrix').replaceChildren(table);
  } catch (e) { showError(e.message); }
};

$('fill').onclick = async () => {
  showError();
  try {
    const { candidates } = await (await api('/v1/fill-mask', { model: $('mask-model').value, text: $('mask-text').value, top_k: 5 })).json();
    $('candidates').replaceChildren(...candidates.map(c => {
      const li = document.createElement('li');
      li.textContent = `${c.token}  ${(c.probability * 100).toFixed(1)} %  — ${c.text}`;
      return li;
    }));
  } catch (e) { showError(e.message); }
};

$('recognize').onclick = async () => {
  showError();
  const text = $('ner-text').value;
  try {
    const { data } = await (await api('/v1/ner', { model: $('ner-model').value, input: text })).json();
    // Offsets are UTF-16 code units, as JavaScript indexes strings; overlapping spans keep the first.
    const parts = [];
    let at = 0;
    for (const e of [...data[0].entities].sort((a, b) => a.start - b.start)) {
      if (e.start < at) continue;
      parts.push(document.createTextNode(text.slice(at, e.start)));
      const mark = document.createElement('mark');
      mark.textContent = text.slice(e.start, e.end);
      mark.dataset.type = e.type;
      mark.title = e.type;
      parts.push(mark);
      at = e.end;
    }
    parts.push(document.createTextNode(text.slice(at)));
    $('entities').replaceChildren(...parts);
  } catch (e) { showError(e.message); }
};

$('generate').onclick = async () => {
  showError();
  $('output').textContent = '';
  $('finish').textContent = '';
  controller = new AbortController();
  $('stop').disabled = false;
  $('generate').disabled = true;
  try {
    const response = await api('/v1/completions', {
      model: $('generation-model').value, prompt: $('prompt').value, stream: true,
      max_tokens: Number($('max-tokens').value), temperature: Number($('temperature').value),
    }, controller.signal);
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let end;
      while ((end = buffer.indexOf('\n\n')) >= 0) {
        const event = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        if (!event.startsWith('data: ')) continue;
        const payload = event.slice(6);
        if (payload === '[DONE]') { $('finish').textContent = $('finish').textContent || 'done'; continue; }
        const choice = JSON.parse(payload).choices[0];
        $('output').textContent += choice.text;
        if (choice.finish_reason) $('finish').textContent = `finished: ${choice.finish_reason}`;
      }
    }
  } catch (e) {
    if (e.name === 'AbortError') $('finish').textContent = 'stopped'; else showError(e.message);
  } finally {
    $('stop').disabled = true;
    $('generate').disabled = false;
  }
};

$('stop').onclick = () => controller && controller.abort();

loadModels().catch(e => showError(e.message));
