// The portal: sign in with the broker's user API, list the pools the user may use, and
// open a desktop in this tab. The bearer token lives in sessionStorage: it goes when the
// tab does, and the desktop page reads it to ask for a ticket on every (re)connect.

const TOKEN = 'oriel.token';

const $ = (id) => document.getElementById(id);

async function api(path, body) {
  const headers = { 'content-type': 'application/json' };
  const token = sessionStorage.getItem(TOKEN);
  if (token) headers.authorization = `Bearer ${token}`;
  const response = await fetch(`/api/v1${path}`, {
    method: body === undefined ? 'GET' : 'POST',
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const json = await response.json().catch(() => ({}));
  if (!response.ok) {
    const error = new Error(json.error || `${response.status} ${response.statusText}`);
    error.status = response.status;
    throw error;
  }
  return json;
}

function showSignIn(message = '') {
  $('sign-in').hidden = false;
  $('pools').hidden = true;
  $('sign-out').hidden = true;
  $('who').textContent = '';
  $('sign-in-error').textContent = message;
}

async function showPools() {
  let pools;
  try {
    pools = await api('/pools');
  } catch (e) {
    if (e.status === 401) {
      sessionStorage.removeItem(TOKEN);
      return showSignIn('Your session ended; sign in again.');
    }
    $('pools-error').textContent = e.message;
    return;
  }
  $('sign-in').hidden = true;
  $('pools').hidden = false;
  $('sign-out').hidden = false;
  $('who').textContent = sessionStorage.getItem('oriel.user') || '';
  const list = $('pool-list');
  list.replaceChildren();
  for (const pool of pools) {
    const item = document.createElement('li');
    item.dataset.pool = pool.name;
    const name = document.createElement('span');
    name.className = 'name';
    name.textContent = pool.name;
    const state = document.createElement('span');
    state.className = 'muted';
    state.textContent = pool.desktop ? `your desktop ${pool.desktop}` : `${pool.ready} ready`;
    const open = document.createElement('a');
    open.href = `/desktop#pool=${encodeURIComponent(pool.name)}`;
    open.className = 'connect';
    open.textContent = 'Connect';
    item.append(name, state, open);
    list.append(item);
  }
  $('no-pools').hidden = pools.length > 0;
}

$('sign-in').addEventListener('submit', async (event) => {
  event.preventDefault();
  const form = new FormData(event.target);
  try {
    const login = await api('/login', { user: form.get('user'), password: form.get('password') });
    sessionStorage.setItem(TOKEN, login.token);
    sessionStorage.setItem('oriel.user', login.user);
    await showPools();
  } catch (e) {
    showSignIn(e.status === 401 ? 'Wrong user name or password.' : e.message);
  }
});

$('sign-out').addEventListener('click', () => {
  sessionStorage.removeItem(TOKEN);
  showSignIn();
});

if (sessionStorage.getItem(TOKEN)) showPools();
else showSignIn();
